// The narrow face of a VFIO container that the DMA policy drives, and what it
// needs to know about the host IOMMU. vfio-core's containers (mock and kernel)
// are adapted to it in `vfio-target.ts`; tests may wrap it to watch calls.
import type { AddressRange } from './guest';
import type { Bytes, Hva, Iova } from './units';

/** DMA permissions, as VFIO_DMA_MAP_FLAG_READ / _WRITE. */
export const DMA_READ = 1;
export const DMA_WRITE = 2;
export const DMA_RW = DMA_READ | DMA_WRITE;

/**
 * One batch of maps, as vfio-core's `mapBatch` takes it: entry i maps
 * [entries[3i], entries[3i]+entries[3i+2]) to host virtual address
 * entries[3i+1], with permissions flags[i]. Typed arrays cross napi as is.
 */
export interface MapBatch {
  /** iova, vaddr, size triples. */
  readonly entries: BigUint64Array;
  /** Per-entry DMA_READ | DMA_WRITE. */
  readonly flags: Uint32Array;
}

/** One batch of unmaps: iova, size pairs, each unmapping exactly that range. */
export interface UnmapBatch {
  readonly entries: BigUint64Array;
}

/**
 * What the policy needs of a container. Both calls are all or nothing: if
 * one entry fails, the target leaves the container as it was and throws an
 * error whose `code` is the errno name (`EEXIST`, `EINVAL`, `ENOSPC`...).
 * Each call returns the number of ioctls it issued (after coalescing).
 */
export interface DmaTarget {
  mapBatch(batch: MapBatch): number;
  unmapBatch(batch: UnmapBatch): number;
}

/** A reserved region of an IOMMU group (`/sys/kernel/iommu_groups/N/reserved_regions`). */
export interface ReservedRegion {
  readonly start: bigint;
  readonly size: bigint;
  /** `msi`, `direct`, `direct-relaxable`, `reserved`. */
  readonly type: string;
}

/** A host IOMMU group as the DMA policy needs it. */
export interface DmaGroup {
  readonly id: number;
  readonly reservedRegions: readonly ReservedRegion[];
}

/** What `VFIO_IOMMU_GET_INFO` tells about a type1 container. */
export interface HostIommuInfo {
  /** `iova_pgsizes`: bitmap of page sizes the host IOMMU maps. */
  readonly pageSizes: bigint;
  /** `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`: where the container accepts IOVAs. */
  readonly iovaRanges: readonly AddressRange[];
  /** `dma_entry_limit` (the DMA-available capability on a fresh container). */
  readonly dmaEntryLimit: number;
}

/** What a 6.1 kernel reported under QEMU's emulated VT-d (see lab-facts.md). */
export const VTD_HOST: HostIommuInfo = {
  pageSizes: 0x40201000n,
  iovaRanges: [
    { start: 0n, size: 0xfee00000n },
    { start: 0xfef00000n, size: 0x8000000000n - 0xfef00000n },
  ],
  dmaEntryLimit: 65535,
};

/** The MSI window x86 groups reserve. */
export const X86_MSI_WINDOW: ReservedRegion = { start: 0xfee00000n, size: 0x100000n, type: 'msi' };

/** An empty map batch of `n` entries to fill with `setMap`. */
export function mapBatchOf(n: number): MapBatch {
  return { entries: new BigUint64Array(3 * n), flags: new Uint32Array(n) };
}

/** Entry i of `b`: IOVA [iova, iova + size) to host address vaddr, all in bytes as the ioctl takes them. */
export function setMap(b: MapBatch, i: number, iova: Iova, vaddr: Hva, size: Bytes, flags: number): void {
  b.entries[3 * i] = iova;
  b.entries[3 * i + 1] = vaddr;
  b.entries[3 * i + 2] = size;
  b.flags[i] = flags;
}

/** An empty unmap batch of `n` entries to fill with `setUnmap`. */
export function unmapBatchOf(n: number): UnmapBatch {
  return { entries: new BigUint64Array(2 * n) };
}

export function setUnmap(b: UnmapBatch, i: number, iova: Iova, size: Bytes): void {
  b.entries[2 * i] = iova;
  b.entries[2 * i + 1] = size;
}
