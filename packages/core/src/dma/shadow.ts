// The shadow policy: a guest with its IOMMU turned on decides what each of its
// devices may reach, and every assigned group's container must hold exactly
// that. QEMU does this by walking the guest's tables on each invalidation and
// calling VFIO once per 4 KiB leaf (vtd_page_walk -> vfio_iommu_map_notify);
// here a guest map or unmap becomes one batched call per container (two, an
// unmap then a map, only when the guest unmaps part of one of its own maps),
// and an invalidation flushes everything pending in one unmap and one map batch.
//
// Rules kept at every step:
// - A container never holds a page its group's domain has not mapped: on every
//   change unmaps go out before maps (enable drops the identity map before the
//   guest's tables are mapped; disable drops the tables before the identity map).
// - Host entries of different guest maps are never merged, unless the caller
//   says they will be unmapped together (`unit`): type1v2 refuses an unmap that
//   splits a mapping (vfio_dma_do_unmap -> -EINVAL). A guest unmap that splits
//   one of its own maps costs an unmap of the whole host entry and a map of
//   what remains: the device briefly loses access, never gains it.
// - `dma_entry_limit` is checked before anything is issued.
import { forbiddenPages, hitsForbidden, iovaCollisions } from './collisions';
import { EntryLimitError, GuestOpError, HostRefusalError } from './errors';
import type { GuestIommuCaps, GuestMemoryLayout, RamRegion } from './guest';
import { IdentityMap } from './identity';
import { addrOf, asPages, IntervalMap, PAGE_SHIFT, pfn, pfnUp, type Pages } from './intervals';
import { hex, regionAt, validateLayout } from './layout';
import { ContainerMappings, type HostEntry, type IovaSpan } from './mappings';
import { asBytes, asHva, asIova } from './units';
import type { DomainType, GuestIommuOp } from './ops';
import { DMA_RW, type DmaGroup, type DmaTarget, type HostIommuInfo } from './target';

/** When a guest's map and unmap take effect on the host. */
export type SyncMode =
  /** At once: Linux's iommu_map/iommu_unmap in strict mode, virtio-iommu's synchronous requests. */
  | 'each-op'
  /** At the domain's next `invalidate` (VT-d: a change is only guaranteed after the IOTLB invalidation). */
  | 'invalidate';

/** An assigned group and the container it gets. */
export interface ShadowGroup {
  readonly group: DmaGroup;
  readonly target: DmaTarget;
}

export interface ShadowOptions {
  /** Guest RAM, each region with its host address. */
  readonly layout: GuestMemoryLayout;
  /** The guest IOMMU's capabilities and whether it starts enabled. */
  readonly iommu: GuestIommuCaps & { readonly enabled: boolean };
  readonly host: HostIommuInfo;
  readonly groups: readonly ShadowGroup[];
  readonly sync: SyncMode;
}

/** One live guest mapping, in 4 KiB pages. */
interface GuestMapping {
  readonly id: number;
  readonly iova: number;
  readonly pages: number;
  readonly gpa: number;
  readonly perm: number;
  readonly unit: number;
  /** Host pieces: one per RAM region the GPA range crosses. */
  readonly pieces: readonly { readonly iova: Pages; readonly pages: Pages; readonly hva: bigint; readonly region: string }[];
}

interface Domain {
  readonly id: number;
  type: DomainType;
  readonly tables: IntervalMap<GuestMapping>;
  /** Mappings in the tables not yet on the host. */
  readonly added: Map<number, GuestMapping>;
  /** Mappings on the host no longer in the tables. */
  readonly removed: Map<number, GuestMapping>;
  readonly groups: Set<number>;
}

type Mode = 'identity' | 'tables' | 'blocked';

interface GroupState {
  readonly group: DmaGroup;
  readonly container: ContainerMappings;
  readonly identity: IdentityMap;
  domain: number | undefined;
  mode: Mode;
  /** Host entries of each guest mapping that is on this container. */
  readonly hostOf: Map<number, HostEntry[]>;
  /** IOVA pages this container can never map. */
  readonly forbidden: [number, number][];
}

/** A guest mapping as the guest sees it, in bytes. */
export interface GuestMappingView {
  readonly iova: bigint;
  readonly gpa: bigint;
  readonly size: bigint;
  readonly perm: number;
}

export class ShadowTranslator {
  private readonly domains = new Map<number, Domain>();
  private readonly groups = new Map<number, GroupState>();
  private layout: GuestMemoryLayout;
  private enabled: boolean;
  private nextId = 1;
  /** Units below this come from callers' hints; ours count down from -1 so they never clash. */
  private nextUnit = -1;
  /** Live guest mapping pieces per RAM region: a region with references cannot be unplugged. */
  private readonly regionRefs = new Map<string, number>();
  private readonly minPages: number;
  private readonly pageBytes: bigint;
  private readonly guestEnd: bigint;
  /** Guest operations applied. */
  opsApplied = 0;

  constructor(private readonly opts: ShadowOptions) {
    this.layout = validateLayout(opts.layout);
    this.enabled = opts.iommu.enabled;
    const minPage = lowestBit(opts.iommu.pageSizes) > lowestBit(opts.host.pageSizes) ? lowestBit(opts.iommu.pageSizes) : lowestBit(opts.host.pageSizes);
    this.minPages = Number(minPage >> PAGE_SHIFT) || 1;
    this.pageBytes = BigInt(this.minPages) << PAGE_SHIFT;
    this.guestEnd = 1n << BigInt(opts.iommu.addressWidth);
    for (const { group, target } of opts.groups) {
      const container = new ContainerMappings(`container of group ${group.id}`, target, opts.host.dmaEntryLimit);
      this.groups.set(group.id, {
        group,
        container,
        identity: new IdentityMap(container, opts.host, [group]),
        domain: undefined,
        mode: 'blocked',
        hostOf: new Map(),
        forbidden: forbiddenPages(opts.host, [group]),
      });
    }
  }

  /** Bring every container to its starting state: all RAM while translation is off, nothing while it is on. */
  start(): void {
    for (const g of this.groups.values()) this.setMode(g, this.modeOf(g), false);
  }

  /** Whether translation is on. */
  get translating(): boolean {
    return this.enabled;
  }

  /** The containers, by group id (for stats and checks). */
  container(group: number): ContainerMappings {
    const g = this.groups.get(group);
    if (!g) throw new GuestOpError(`group ${group} is not assigned to this guest`);
    return g.container;
  }

  /** What the guest has mapped in a domain (its current tables), in IOVA order. */
  guestMappings(domain: number): GuestMappingView[] {
    const d = this.domains.get(domain);
    if (!d) return [];
    const out: GuestMappingView[] = [];
    for (const [, , m] of d.tables.entries())
      out.push({ iova: addrOf(m.iova), gpa: addrOf(m.gpa), size: addrOf(m.pages), perm: m.perm });
    return out;
  }

  /** Live guest mapping pieces that point into a RAM region. */
  referencesTo(region: string): number {
    return this.regionRefs.get(region) ?? 0;
  }

  /**
   * Apply one guest operation. A refused operation (GuestOpError,
   * HostRefusalError, EntryLimitError) changes nothing, guest side or host
   * side. A failure of the target itself (vfio-core's VfioError: the kernel said no
   * where no check could foresee it, ENOMEM from the memlock limit say) leaves
   * a container holding less than the guest granted, never more.
   */
  apply(op: GuestIommuOp): void {
    switch (op.op) {
      case 'map':
        this.map(op.domain, op.iova, op.gpa, op.size, op.perm, op.unit);
        if (this.opts.sync === 'each-op') this.flush(this.domain(op.domain));
        break;
      case 'unmap':
        this.unmap(op.domain, op.iova, op.size);
        if (this.opts.sync === 'each-op') this.flush(this.domain(op.domain));
        break;
      case 'invalidate':
        this.flush(this.domain(op.domain));
        break;
      case 'attach':
        this.attach(op.group, op.domain, op.domainType ?? 'dma');
        break;
      case 'detach':
        this.detach(op.group, op.domain);
        break;
      case 'enable':
      case 'disable':
        this.setEnabled(op.op === 'enable');
        break;
    }
    this.opsApplied++;
  }

  /** Follow a hot-plugged DIMM. */
  plug(region: RamRegion): void {
    const next = validateLayout({
      ...this.layout,
      regions: [...this.layout.regions, region].sort((a, b) => (a.gpa < b.gpa ? -1 : 1)),
    });
    for (const g of this.groups.values()) if (g.mode === 'identity') g.identity.plug(region);
    this.layout = next;
  }

  /** Follow an unplugged DIMM; refused while guest mappings still point into it. */
  unplug(name: string): void {
    const refs = this.referencesTo(name);
    if (refs > 0)
      throw new GuestOpError(
        `cannot unplug RAM region ${name}: ${refs} guest IOMMU mapping(s) still point into it; the guest must unmap them before the DIMM goes`,
      );
    for (const g of this.groups.values()) if (g.mode === 'identity') g.identity.unplug(name);
    this.layout = { ...this.layout, regions: this.layout.regions.filter((r) => r.name !== name) };
  }

  private domain(id: number): Domain {
    let d = this.domains.get(id);
    if (!d) {
      d = { id, type: 'dma', tables: new IntervalMap(), added: new Map(), removed: new Map(), groups: new Set() };
      this.domains.set(id, d);
    }
    return d;
  }

  private modeOf(g: GroupState): Mode {
    if (!this.enabled) return 'identity';
    if (g.domain === undefined) return 'blocked';
    return this.domain(g.domain).type === 'identity' ? 'identity' : 'tables';
  }

  // ---- guest table changes -------------------------------------------------

  private checkRange(what: string, iova: bigint, size: bigint): void {
    const pageBytes = this.pageBytes;
    if (size <= 0n || iova % pageBytes !== 0n || size % pageBytes !== 0n)
      throw new GuestOpError(`${what} of IOVA ${hex(iova)} size ${hex(size)} is not a whole number of ${pageBytes} byte pages`);
    const end = iova + size;
    if (end > this.guestEnd || !this.opts.iommu.iovaRanges.some((r) => r.start <= iova && end <= r.start + r.size))
      throw new GuestOpError(
        `${what} of IOVA ${hex(iova)}-${hex(end - 1n)} is outside the guest IOMMU's ${this.opts.iommu.addressWidth}-bit IOVA space`,
      );
  }

  private map(domainId: number, iova: bigint, gpa: bigint, size: bigint, perm: number, unit: number | undefined): void {
    this.checkRange('guest map', iova, size);
    if (gpa % (BigInt(this.minPages) << PAGE_SHIFT) !== 0n) throw new GuestOpError(`guest map to GPA ${hex(gpa)} is not page aligned`);
    if ((perm & ~DMA_RW) !== 0 || perm === 0) throw new GuestOpError(`guest map of IOVA ${hex(iova)} has permissions ${perm}; expected 1 (read), 2 (write) or 3`);
    const d = this.domain(domainId);
    const start = pfn(iova);
    const pages = pfn(size);
    if (d.tables.intersects(start, start + pages)) {
      const [i] = d.tables.overlapping(start, start + pages);
      const other = d.tables.valueAt(i);
      throw new GuestOpError(
        `guest map of IOVA ${hex(iova)}-${hex(iova + size - 1n)} in domain ${domainId} overlaps its live mapping at ${hex(addrOf(other.iova))}; a guest must unmap before it remaps (the kernel answers EEXIST)`,
      );
    }
    const pieces = this.hostPieces(start, pfn(gpa), pages, `guest map of IOVA ${hex(iova)}`);
    const m: GuestMapping = { id: this.nextId++, iova: start, pages, gpa: pfn(gpa), perm, unit: unit ?? this.nextUnit--, pieces };
    this.checkHost(d, [m], []);
    d.tables.insert(start, start + pages, m);
    d.added.set(m.id, m);
    this.ref(m, 1);
  }

  private unmap(domainId: number, iova: bigint, size: bigint): void {
    this.checkRange('guest unmap', iova, size);
    const d = this.domain(domainId);
    const start = pfn(iova);
    const end = start + pfn(size);
    const [i, j] = d.tables.overlapping(start, end);
    if (i === j) return; // iommu_unmap of nothing unmaps 0 bytes; nothing to mirror.
    const gone: GuestMapping[] = [];
    const rest: GuestMapping[] = [];
    for (let k = i; k < j; k++) {
      const m = d.tables.valueAt(k);
      gone.push(m);
      // The guest unmapped part of one of its maps: what it keeps becomes new mappings.
      if (m.iova < start) rest.push(this.slice(m, m.iova, start));
      if (m.iova + m.pages > end) rest.push(this.slice(m, end, m.iova + m.pages));
    }
    this.checkHost(d, rest, gone);
    d.tables.removeAt(i, j);
    for (const m of gone) {
      this.ref(m, -1);
      if (d.added.has(m.id)) d.added.delete(m.id);
      else d.removed.set(m.id, m);
    }
    for (const m of rest) {
      d.tables.insert(m.iova, m.iova + m.pages, m);
      d.added.set(m.id, m);
      this.ref(m, 1);
    }
  }

  /** The part [from, to) of mapping m, as a new mapping of its own. */
  private slice(m: GuestMapping, from: number, to: number): GuestMapping {
    const gpa = m.gpa + (from - m.iova);
    return {
      id: this.nextId++,
      iova: from,
      pages: to - from,
      gpa,
      perm: m.perm,
      unit: this.nextUnit--,
      pieces: this.hostPieces(from, gpa, to - from, 'remainder'),
    };
  }

  /** Split a guest-physical range into per-RAM-region host pieces; refuse anything that is not RAM. */
  private hostPieces(iova: number, gpa: number, pages: number, what: string): GuestMapping['pieces'] {
    const out: { iova: Pages; pages: Pages; hva: bigint; region: string }[] = [];
    let at = 0;
    while (at < pages) {
      const g = addrOf(gpa + at);
      const r = regionAt(this.layout, g);
      if (!r || r.hva === undefined)
        throw new HostRefusalError(
          r
            ? `RAM region ${r.name} has no host address; the VMM must report where guest RAM is mapped`
            : `${what} points at GPA ${hex(g)}, which is not guest RAM (a hole or a device BAR); vfiokit mirrors only RAM, so peer-to-peer DMA through the guest IOMMU is not supported`,
        );
      const rEnd = pfn(r.gpa + r.size);
      const n = Math.min(pages - at, rEnd - (gpa + at));
      out.push({ iova: asPages(iova + at), pages: asPages(n), hva: r.hva + (g - r.gpa), region: r.name });
      at += n;
    }
    return out;
  }

  private ref(m: GuestMapping, delta: number): void {
    for (const p of m.pieces) this.regionRefs.set(p.region, (this.regionRefs.get(p.region) ?? 0) + delta);
  }

  /**
   * Before a change to domain d that adds `adds` and removes `drops`: every
   * container that mirrors d must accept the new IOVAs (host ranges, reserved
   * regions) and stay within its entry limit once everything pending is flushed.
   */
  private checkHost(d: Domain, adds: readonly GuestMapping[], drops: readonly GuestMapping[]): void {
    for (const gid of d.groups) {
      const g = this.groups.get(gid)!;
      if (g.mode !== 'tables') continue;
      this.checkCollisions(g, adds);
      let projected = g.container.size;
      for (const m of d.added.values()) projected += m.pieces.length;
      for (const m of d.removed.values()) projected -= g.hostOf.get(m.id)?.length ?? 0;
      for (const m of adds) projected += m.pieces.length;
      for (const m of drops) projected -= d.added.has(m.id) ? m.pieces.length : (g.hostOf.get(m.id)?.length ?? 0);
      if (projected > this.opts.host.dmaEntryLimit)
        throw new EntryLimitError(
          `${g.container.name} would need ${projected} mappings, over its dma_entry_limit of ${this.opts.host.dmaEntryLimit}; ` +
            `the kernel would answer ENOSPC. Raise vfio_iommu_type1's dma_entry_limit or have the guest map larger chunks`,
        );
    }
  }

  private checkCollisions(g: GroupState, ms: Iterable<GuestMapping>): void {
    const ranges = [];
    for (const m of ms)
      if (hitsForbidden(g.forbidden, m.iova, m.iova + m.pages))
        ranges.push({ name: `guest IOVA ${hex(addrOf(m.iova))}`, start: addrOf(m.iova), size: addrOf(m.pages) });
    if (ranges.length === 0) return;
    const found = iovaCollisions(ranges, this.opts.host, [g.group]);
    if (found.length > 0)
      throw new HostRefusalError(
        `the guest mapped IOVAs the host cannot map for group ${g.group.id}: ${found[0]!.message}${found.length > 1 ? ` (and ${found.length - 1} more)` : ''}; ` +
          `the guest IOMMU must reserve them (QEMU would fail at run time with "VFIO_MAP_DMA failed: -22")`,
        found.map((c) => c.message),
      );
  }

  // ---- host side -----------------------------------------------------------

  /** The host entries of guest mapping m, remembered as m's so a run can name its owners. */
  private entriesOf(m: GuestMapping, unit = m.unit): HostEntry[] {
    // The guest's page numbers become the host's bytes here, once: the
    // container's record and the batch hold bytes from now on.
    return m.pieces.map((p) => ({ iova: asIova(addrOf(p.iova)), size: asBytes(addrOf(p.pages)), hva: asHva(p.hva), perm: m.perm, unit, owner: m.id }));
  }

  /** Make the host reflect the domain's pending changes: one unmap batch, then one map batch, per container. */
  private flush(d: Domain): void {
    if (d.added.size === 0 && d.removed.size === 0) return;
    for (const gid of d.groups) {
      const g = this.groups.get(gid)!;
      if (g.mode !== 'tables') continue;
      const ranges: IovaSpan[] = [];
      const collateral: GuestMapping[] = [];
      const removedIds = d.removed;
      for (const m of d.removed.values()) {
        for (const e of g.hostOf.get(m.id) ?? []) {
          const run = this.runOf(g, e);
          ranges.push(run);
          // Entries merged with this one under a shared unit but still mapped by the guest go back in.
          for (const other of g.container.overlapping(pfn(run.iova), pfnUp(run.iova + run.size))) {
            if (other.owner === undefined || removedIds.has(other.owner)) continue;
            // Still mapped by the guest, so still in its tables at the entry's IOVA.
            const page = pfn(other.iova);
            const [i, j] = d.tables.overlapping(page, page + 1);
            const owner = i < j ? d.tables.valueAt(i) : undefined;
            if (owner && owner.id === other.owner && !collateral.includes(owner)) collateral.push(owner);
          }
        }
        g.hostOf.delete(m.id);
      }
      if (ranges.length > 0) g.container.unmap(ranges);
      const adds: HostEntry[] = [];
      for (const m of d.added.values()) {
        const es = this.entriesOf(m);
        g.hostOf.set(m.id, es);
        adds.push(...es);
      }
      // A fresh unit each: they were merged with something the guest has now unmapped.
      for (const m of collateral) {
        const es = this.entriesOf(m, this.nextUnit--);
        g.hostOf.set(m.id, es);
        adds.push(...es);
      }
      if (adds.length > 0) g.container.map(adds);
    }
    d.added.clear();
    d.removed.clear();
  }

  /** The extent of the kernel mapping holding entry e: its mergeable same-unit neighbours included. */
  private runOf(g: GroupState, e: HostEntry): IovaSpan {
    let left = e;
    for (;;) {
      const start = pfn(left.iova);
      const prev = g.container.overlapping(start - 1, start)[0];
      if (!prev || prev.unit !== e.unit || prev.perm !== left.perm || prev.iova + prev.size !== left.iova || prev.hva + prev.size !== left.hva) break;
      left = prev;
    }
    let right = e;
    for (;;) {
      const end = pfnUp(right.iova + right.size);
      const next = g.container.overlapping(end, end + 1)[0];
      if (!next || next.unit !== e.unit || next.perm !== right.perm || right.iova + right.size !== next.iova || right.hva + right.size !== next.hva) break;
      right = next;
    }
    return { iova: left.iova, size: asBytes(right.iova + right.size - left.iova) };
  }

  private flushAll(): void {
    for (const d of this.domains.values()) this.flush(d);
  }

  /**
   * Move a container to `mode`. Everything it holds is unmapped before
   * anything new is mapped, so at no instant does it hold more than either the
   * old grant or the new one. `rebuild` forces the move when the mode stays
   * `tables` but the domain changed.
   */
  private setMode(g: GroupState, mode: Mode, rebuild: boolean): void {
    if (g.mode === mode && !(rebuild && mode === 'tables')) return;
    // Check the new contents before dropping the old ones: a refusal leaves the container as it was.
    const d = mode === 'tables' ? this.domain(g.domain!) : undefined;
    if (d) this.checkFits(g, d);
    if (g.mode === 'identity') g.identity.unmapAll();
    else if (g.container.size > 0) g.container.unmapAll();
    g.hostOf.clear();
    g.mode = mode;
    if (mode === 'identity') g.identity.mapAll(this.layout);
    else if (d) {
      const adds: HostEntry[] = [];
      for (const [, , m] of d.tables.entries()) {
        const es = this.entriesOf(m);
        g.hostOf.set(m.id, es);
        adds.push(...es);
      }
      g.container.map(adds);
    }
  }

  /** Whether group g's container can hold all of domain d's tables. */
  private checkFits(g: GroupState, d: Domain): void {
    const all: GuestMapping[] = [];
    for (const [, , m] of d.tables.entries()) all.push(m);
    this.checkCollisions(g, all);
    let n = 0;
    for (const m of all) n += m.pieces.length;
    if (n > this.opts.host.dmaEntryLimit)
      throw new EntryLimitError(
        `${g.container.name} would need ${n} mappings for domain ${d.id}, over its dma_entry_limit of ${this.opts.host.dmaEntryLimit} (ENOSPC)`,
      );
  }

  private setEnabled(on: boolean): void {
    if (on === this.enabled) {
      // Rewriting the enable bit makes the hardware read the tables as they stand.
      this.flushAll();
      return;
    }
    this.enabled = on;
    try {
      for (const g of this.groups.values()) if (this.modeOf(g) === 'tables') this.checkFits(g, this.domain(g.domain!));
    } catch (e) {
      this.enabled = !on;
      throw e;
    }
    // Every container leaves or enters its tables whole, so pending changes
    // need no flush of their own: the new contents are the tables as they stand.
    for (const g of this.groups.values()) this.setMode(g, this.modeOf(g), false);
    for (const d of this.domains.values()) {
      d.added.clear();
      d.removed.clear();
    }
  }

  private attach(groupId: number, domainId: number, type: DomainType): void {
    const d = this.domain(domainId);
    if (d.tables.size > 0 && d.type !== type)
      throw new GuestOpError(`domain ${domainId} is a ${d.type} domain; it cannot be attached as ${type}`);
    d.type = type;
    const g = this.groups.get(groupId);
    if (!g) return; // an emulated device's group: nothing on the host follows it
    const previous = g.domain;
    if (previous === domainId) {
      // Attaching again rewrites the context entry: the hardware reads the tables as they stand.
      this.flush(d);
      return;
    }
    if (this.enabled && type === 'dma') this.checkFits(g, d);
    // The group leaves its old domain before that domain's pending changes go
    // out, so none of them reaches this container on its way elsewhere.
    if (previous !== undefined) {
      this.domain(previous).groups.delete(groupId);
      this.flush(this.domain(previous));
    }
    this.flush(d);
    g.domain = domainId;
    this.setMode(g, this.modeOf(g), true);
    d.groups.add(groupId);
  }

  private detach(groupId: number, domainId: number): void {
    const g = this.groups.get(groupId);
    if (!g) return;
    if (g.domain !== domainId)
      throw new GuestOpError(`group ${groupId} is not attached to domain ${domainId} (it is ${g.domain === undefined ? 'detached' : `in domain ${g.domain}`})`);
    this.domain(domainId).groups.delete(groupId);
    g.domain = undefined;
    this.setMode(g, this.modeOf(g), false);
  }
}

function lowestBit(n: bigint): bigint {
  return n & -n;
}
