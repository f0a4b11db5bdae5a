// Where guest ranges may not go on the host: outside the container's IOVA
// ranges, or over a group's reserved regions. The kernel checks the same at
// VFIO_IOMMU_MAP_DMA time (vfio_iommu_iova_dma_valid: -EINVAL), which QEMU
// only learns as "VFIO_MAP_DMA failed: -22"; checking first lets a plan name
// the region and the collision before anything is mapped.
import type { AddressRange } from './guest';
import { hex } from './layout';
import { knownWindow } from './reserved-windows';
import type { DmaGroup, HostIommuInfo, ReservedRegion } from './target';

/** A guest range to check, named for the message. */
export interface NamedRange {
  readonly name: string;
  readonly start: bigint;
  readonly size: bigint;
}

/** One collision, as data and as a sentence. */
export interface Collision {
  readonly range: string;
  /** `reserved` (a group's reserved region) or `outside` (not inside the host IOVA ranges). */
  readonly kind: 'reserved' | 'outside';
  readonly message: string;
  /** The reserved region hit (`kind` reserved). */
  readonly region?: ReservedRegion;
}

function span(start: bigint, size: bigint): string {
  return `${hex(start)}-${hex(start + size - 1n)}`;
}

/** Parts of [start, start+size) not covered by `ranges` (sorted by start, disjoint). */
export function uncovered(start: bigint, size: bigint, ranges: readonly AddressRange[]): AddressRange[] {
  const out: AddressRange[] = [];
  let at = start;
  const end = start + size;
  for (const r of ranges) {
    if (at >= end) break;
    const rEnd = r.start + r.size;
    if (rEnd <= at) continue;
    if (r.start > at) out.push({ start: at, size: (r.start < end ? r.start : end) - at });
    at = rEnd > at ? rEnd : at;
  }
  if (at < end) out.push({ start: at, size: end - at });
  return out;
}

/**
 * Every collision of `ranges` with the groups' reserved regions and the host
 * IOVA ranges. `direct-relaxable` regions are skipped, as
 * vfio_iommu_resv_exclude does (they are RMRRs a device may give up, like the
 * LPC bridge's 0-16 MiB ISA range).
 */
export function iovaCollisions(
  ranges: readonly NamedRange[],
  host: HostIommuInfo,
  groups: readonly DmaGroup[],
): Collision[] {
  const out: Collision[] = [];
  const hostRanges = [...host.iovaRanges].sort((a, b) => (a.start < b.start ? -1 : 1));
  for (const r of ranges) {
    const end = r.start + r.size;
    let reservedHit = false;
    for (const g of groups) {
      for (const rr of g.reservedRegions) {
        if (rr.type === 'direct-relaxable') continue;
        if (rr.start < end && r.start < rr.start + rr.size) {
          reservedHit = true;
          const known = knownWindow(rr);
          out.push({
            range: r.name,
            kind: 'reserved',
            message: `${r.name} (${span(r.start, r.size)}) collides with group ${g.id}'s ${rr.type} reserved region ${span(rr.start, rr.size)}${known ? `, ${known.name}` : ''}`,
            region: rr,
          });
        }
      }
    }
    for (const gap of uncovered(r.start, r.size, hostRanges)) {
      // A gap that is exactly a reserved region already reported says nothing new.
      if (reservedHit && groups.some((g) => g.reservedRegions.some((rr) => rr.start <= gap.start && gap.start + gap.size <= rr.start + rr.size)))
        continue;
      out.push({
        range: r.name,
        kind: 'outside',
        message: `${r.name} (${span(r.start, r.size)}) reaches ${span(gap.start, gap.size)}, outside the host IOMMU's IOVA ranges (${host.iovaRanges
          .map((h) => span(h.start, h.size))
          .join(', ')})`,
      });
    }
  }
  return out;
}

/**
 * The IOVA pages a container of `groups` can never map, as sorted page
 * intervals: the gaps of the host IOVA ranges and the groups' reserved regions
 * (direct-relaxable excepted). For the shadow policy's per-operation check,
 * which must be cheap; `iovaCollisions` then words the message.
 */
export function forbiddenPages(host: HostIommuInfo, groups: readonly DmaGroup[]): [number, number][] {
  const out: [number, number][] = [];
  const pg = (a: bigint) => Number(a >> 12n);
  const ranges = [...host.iovaRanges].sort((a, b) => (a.start < b.start ? -1 : 1));
  let at = 0n;
  for (const r of ranges) {
    if (r.start > at) out.push([pg(at), pg(r.start)]);
    if (r.start + r.size > at) at = r.start + r.size;
  }
  out.push([pg(at), Number.MAX_SAFE_INTEGER]);
  for (const g of groups)
    for (const rr of g.reservedRegions) if (rr.type !== 'direct-relaxable') out.push([pg(rr.start), pg(rr.start + rr.size + 0xfffn)]);
  return out.sort((a, b) => a[0] - b[0]);
}

/** Whether page interval [start, end) meets any forbidden interval. */
export function hitsForbidden(forbidden: readonly [number, number][], start: number, end: number): boolean {
  for (const [s, e] of forbidden) {
    if (s >= end) return false;
    if (e > start) return true;
  }
  return false;
}
