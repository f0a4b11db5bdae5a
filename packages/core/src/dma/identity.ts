// The identity policy: a guest without an IOMMU, or with one it has not turned
// on, lets its devices reach all of its RAM at IOVA = guest physical address.
// QEMU does the same from vfio_listener_region_add, one VFIO_IOMMU_MAP_DMA per
// RAM section; here the whole layout goes out as one batch.
import { forbiddenPages, hitsForbidden, iovaCollisions } from './collisions';
import { InvalidLayoutError, IovaCollisionError } from './errors';
import type { GuestMemoryLayout, RamRegion } from './guest';
import { pfn, pfnUp } from './intervals';
import { hex, validateLayout } from './layout';
import type { ContainerMappings, HostEntry, IovaSpan } from './mappings';
import { DMA_RW, type DmaGroup, type HostIommuInfo } from './target';
import { asBytes, asHva, identityIova } from './units';

/** Refuse, naming every collision, a set of regions the host cannot map at IOVA = GPA. */
export function checkIdentityRegions(regions: readonly RamRegion[], host: HostIommuInfo, groups: readonly DmaGroup[]): void {
  // Page-number test first: a 1 TiB layout of thousands of regions is checked
  // without building a message for each.
  const forbidden = forbiddenPages(host, groups);
  const hit = regions.filter((r) => {
    // In Numbers while the end is exactly representable (below 2^53: any
    // real guest), saving the BigInt sum and its garbage on every region.
    const start = Number(r.gpa);
    const end = start + Number(r.size);
    return end <= Number.MAX_SAFE_INTEGER
      ? hitsForbidden(forbidden, Math.floor(start / 4096), Math.ceil(end / 4096))
      : hitsForbidden(forbidden, pfn(r.gpa), pfnUp(r.gpa + r.size));
  });
  if (hit.length === 0) return;
  const found = iovaCollisions(
    hit.map((r) => ({ name: `RAM region ${r.name}`, start: r.gpa, size: r.size })),
    host,
    groups,
  );
  if (found.length > 0) {
    throw new IovaCollisionError(
      // One line however many regions collide (a fragmented 1 TiB layout has
      // tens of thousands); the error's details list them all.
      `cannot map guest RAM at IOVA = GPA: ${found[0]!.message}${found.length > 1 ? ` (and ${found.length - 1} more region${found.length > 2 ? 's' : ''})` : ''}; move the RAM (QEMU: shrink ram-below-4g or place DIMMs elsewhere) or give the guest an IOMMU`,
      found.map((c) => c.message),
    );
  }
}

/** The host entry that maps a region at IOVA = GPA: its bytes as they are, no page numbers between. */
export function identityEntry(r: RamRegion, unit: number): HostEntry {
  if (r.hva === undefined)
    throw new InvalidLayoutError(`RAM region ${r.name} has no host address; the VMM must report where it mapped guest RAM`);
  return { iova: identityIova(r.gpa), size: asBytes(r.size), hva: asHva(r.hva), perm: DMA_RW, unit };
}

/** The IOVA range a region holds at IOVA = GPA. */
function identitySpan(r: RamRegion): IovaSpan {
  return { iova: identityIova(r.gpa), size: asBytes(r.size) };
}

/**
 * Keeps a container equal to the guest's RAM at IOVA = GPA, through hot-plug
 * and unplug. Boot RAM is one unit (it is only ever unmapped whole, so the
 * target may merge it); each hot-plugged DIMM is its own unit, so unplugging
 * it never splits a mapping.
 */
export class IdentityMap {
  private layout: GuestMemoryLayout = { regions: [] };
  private readonly units = new Map<string, number>();
  private nextUnit = 1;

  constructor(
    private readonly container: ContainerMappings,
    private readonly host: HostIommuInfo,
    private readonly groups: readonly DmaGroup[],
  ) {}

  /** The regions currently mapped. */
  get regions(): readonly RamRegion[] {
    return this.layout.regions;
  }

  private unitOf(r: RamRegion): number {
    let u = this.units.get(r.name);
    if (u === undefined) {
      u = r.source === 'boot' ? 0 : this.nextUnit++;
      this.units.set(r.name, u);
    }
    return u;
  }

  /** Map every region of `layout` (checked first: nothing is mapped if any region collides). */
  mapAll(layout: GuestMemoryLayout): void {
    if (this.layout.regions.length > 0)
      throw new InvalidLayoutError(`${this.container.name} already holds the identity map; unmap it before mapping another layout`);
    validateLayout(layout);
    checkIdentityRegions(layout.regions, this.host, this.groups);
    this.container.map(layout.regions.map((r) => identityEntry(r, this.unitOf(r))));
    this.layout = layout;
  }

  /** Follow a hot-plugged DIMM: check, then map it. */
  plug(region: RamRegion): void {
    const next = validateLayout({
      ...this.layout,
      regions: [...this.layout.regions, region].sort((a, b) => (a.gpa < b.gpa ? -1 : 1)),
    });
    checkIdentityRegions([region], this.host, this.groups);
    this.container.map([identityEntry(region, this.unitOf(region))]);
    this.layout = next;
  }

  /** Follow an unplugged DIMM: unmap it (the guest has already stopped using it). */
  unplug(name: string): void {
    const r = this.layout.regions.find((x) => x.name === name);
    if (!r) throw new InvalidLayoutError(`no RAM region named ${name} is mapped in ${this.container.name}`);
    if (r.source === 'boot')
      throw new InvalidLayoutError(`RAM region ${name} at ${hex(r.gpa)} is boot memory and cannot be unplugged`);
    this.container.unmap([identitySpan(r)]);
    this.layout = { ...this.layout, regions: this.layout.regions.filter((x) => x !== r) };
    this.units.delete(name);
  }

  /** Unmap everything this map put in the container. */
  unmapAll(): void {
    this.container.unmap(this.layout.regions.map(identitySpan));
    this.layout = { regions: [] };
  }
}
