// Guest IOMMU operations: what a guest does to its IOMMU, whatever the IOMMU
// model. The shadow translator consumes them; traces are sequences of them
// (see TRACE-FORMAT.md for the file form).

/** The kind of a guest domain: translated through tables, or identity (passthrough, Linux `iommu=pt`). */
export type DomainType = 'dma' | 'identity';

export type GuestIommuOp =
  /** The guest mapped IOVA [iova, iova+size) to guest physical gpa (iommu_map). */
  | {
      readonly op: 'map';
      readonly domain: number;
      readonly iova: bigint;
      readonly gpa: bigint;
      readonly size: bigint;
      /** DMA_READ | DMA_WRITE. */
      readonly perm: number;
      /**
       * Optional hint: maps sharing a `unit` will be unmapped together, so the
       * host may merge them (a replayer that can see the future sets it).
       */
      readonly unit?: number;
    }
  /** The guest unmapped every page in [iova, iova+size) (iommu_unmap). */
  | { readonly op: 'unmap'; readonly domain: number; readonly iova: bigint; readonly size: bigint }
  /** The guest invalidated its IOTLB for the domain: pending maps and unmaps take effect. */
  | { readonly op: 'invalidate'; readonly domain: number }
  /** The guest attached a group's devices to a domain. */
  | { readonly op: 'attach'; readonly domain: number; readonly group: number; readonly domainType?: DomainType }
  /** The guest detached a group from its domain (its devices are blocked until attached again). */
  | { readonly op: 'detach'; readonly domain: number; readonly group: number }
  /** The guest turned translation on (VT-d GCMD.TE, virtio-iommu leaving bypass). */
  | { readonly op: 'enable' }
  /** The guest turned translation off: devices reach all RAM untranslated again. */
  | { readonly op: 'disable' };
