// Building and changing guest memory layouts: QEMU's q35 split of RAM around
// the PCI hole, DIMM hot-plug and unplug, and the checks every layout passes.
import { InvalidLayoutError } from './errors';
import type { GuestMemoryLayout, RamRegion } from './guest';

const GiB = 1n << 30n;
const PAGE = 0x1000n;

export function hex(n: bigint): string {
  return '0x' + n.toString(16);
}

/**
 * The layout QEMU's q35 machine gives `ramBytes` of boot RAM: below 4 GiB up to
 * 2 GiB when RAM is 2.75 GiB or more (else up to 2.75 GiB), the rest from
 * 4 GiB (pc_q35_init: `lowmem = ram_size >= 0xb0000000 ? 0x80000000 : 0xb0000000`).
 */
export function q35Layout(ramBytes: bigint): GuestMemoryLayout {
  const lowmem = ramBytes >= 0xb0000000n ? 0x80000000n : 0xb0000000n;
  const below = ramBytes < lowmem ? ramBytes : lowmem;
  const regions: RamRegion[] = [{ name: 'ram-below-4g', gpa: 0n, size: below, source: 'boot' }];
  if (ramBytes > below) regions.push({ name: 'ram-above-4g', gpa: 4n * GiB, size: ramBytes - below, source: 'boot' });
  return validateLayout({ regions });
}

/**
 * Check a layout: every region page-aligned and non-empty, names unique,
 * regions sorted and not overlapping. Returns it, so callers can chain.
 */
export function validateLayout(layout: GuestMemoryLayout): GuestMemoryLayout {
  const names = new Set<string>();
  let prev: RamRegion | undefined;
  for (const r of layout.regions) {
    if (r.size <= 0n) throw new InvalidLayoutError(`RAM region ${r.name} is empty; give it a size of at least 4 KiB`);
    if (r.gpa % PAGE !== 0n || r.size % PAGE !== 0n)
      throw new InvalidLayoutError(
        `RAM region ${r.name} (${hex(r.gpa)}+${hex(r.size)}) is not 4 KiB aligned; VFIO maps whole pages only`,
      );
    if (r.hva !== undefined && r.hva % PAGE !== 0n)
      throw new InvalidLayoutError(`RAM region ${r.name} has host address ${hex(r.hva)}, not 4 KiB aligned`);
    if (names.has(r.name)) throw new InvalidLayoutError(`two RAM regions are named ${r.name}; names must be unique`);
    names.add(r.name);
    if (prev && r.gpa < prev.gpa + prev.size)
      throw new InvalidLayoutError(
        r.gpa < prev.gpa
          ? `RAM region ${r.name} at ${hex(r.gpa)} comes after ${prev.name} at ${hex(prev.gpa)}; sort regions by address`
          : `RAM region ${r.name} at ${hex(r.gpa)} overlaps ${prev.name} (${hex(prev.gpa)}-${hex(prev.gpa + prev.size - 1n)})`,
      );
    prev = r;
  }
  return layout;
}

/**
 * Give every region a host virtual address, packed from `base` in GPA order
 * with a guard gap, as a VMM that allocates each RAM block separately would.
 * Used by simulations and benchmarks; a real VMM reports its own addresses.
 */
export function placeRam(layout: GuestMemoryLayout, base = 0x7f0000000000n, gap = 2n << 20n): GuestMemoryLayout {
  let at = base;
  const regions = layout.regions.map((r) => {
    const placed = { ...r, hva: at };
    at += r.size + gap;
    return placed;
  });
  return { ...layout, regions };
}

/** The region holding guest-physical `gpa`, or undefined (binary search; regions are sorted). */
export function regionAt(layout: GuestMemoryLayout, gpa: bigint): RamRegion | undefined {
  const rs = layout.regions;
  let lo = 0;
  let hi = rs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = rs[mid]!;
    if (gpa < r.gpa) hi = mid - 1;
    else if (gpa >= r.gpa + r.size) lo = mid + 1;
    else return r;
  }
  return undefined;
}
