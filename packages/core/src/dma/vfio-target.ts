// Adapters from vfio-core's containers to the DmaTarget seam.
// PLACEHOLDER until vfio-core's mapBatch lands: a counting target with the
// coalescing rule of vfio-core's batch.rs.
import type { DmaTarget, HostIommuInfo, MapBatch, UnmapBatch } from './target';

/** What `openMockDmaTarget` opens, for reports. */
export const MOCK_TARGET_KIND = 'a counting stand-in (vfio-core mapBatch not landed yet)';

export function openMockDmaTarget(_host: HostIommuInfo, _groups: readonly number[]): DmaTarget {
  return {
    mapBatch(b: MapBatch): number {
      let n = 0;
      for (let i = 0; i < b.iova.length; i++) {
        if (i > 0 && b.iova[i] === b.iova[i - 1]! + b.size[i - 1]! && b.vaddr[i] === b.vaddr[i - 1]! + b.size[i - 1]! && b.flags[i] === b.flags[i - 1]) continue;
        n++;
      }
      return n;
    },
    unmapBatch(b: UnmapBatch): number {
      return b.iova.length;
    },
  };
}
