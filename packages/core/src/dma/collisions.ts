// Where guest ranges may not go on the host: outside the container's IOVA
// ranges, or over a group's reserved regions. The kernel checks the same at
// VFIO_IOMMU_MAP_DMA time (vfio_iommu_iova_dma_valid: -EINVAL), which QEMU
// only learns as "VFIO_MAP_DMA failed: -22"; checking first lets a plan name
// the region and the collision before anything is mapped.
import type { AddressRange } from './guest';
import { hex } from './layout';
import type { DmaGroup, HostIommuInfo } from './target';

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
}

function span(start: bigint, size: bigint): string {
  return `${hex(start)}-${hex(start + size - 1n)}`;
}

/** Parts of [start, start+size) not covered by `ranges` (sorted, disjoint). */
export function uncovered(start: bigint, size: bigint, ranges: readonly AddressRange[]): AddressRange[] {
  const out: AddressRange[] = [];
  let at = start;
  const end = start + size;
  for (const r of [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))) {
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
  for (const r of ranges) {
    const end = r.start + r.size;
    let reservedHit = false;
    for (const g of groups) {
      for (const rr of g.reservedRegions) {
        if (rr.type === 'direct-relaxable') continue;
        if (rr.start < end && r.start < rr.start + rr.size) {
          reservedHit = true;
          out.push({
            range: r.name,
            kind: 'reserved',
            message: `${r.name} (${span(r.start, r.size)}) collides with group ${g.id}'s ${rr.type} reserved region ${span(rr.start, rr.size)}`,
          });
        }
      }
    }
    for (const gap of uncovered(r.start, r.size, host.iovaRanges)) {
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
