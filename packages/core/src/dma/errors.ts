// Errors of the DMA policy layer. Each subclass is a case a caller handles
// differently; `code` is stable, the message names the object, the cause and
// the fix.
import { VfiokitError, type VfiokitErrorOptions } from '../errors';

/** Base of every DMA policy error. */
export class DmaError extends VfiokitError {
  constructor(code: string, message: string, options?: VfiokitErrorOptions) {
    super(code, message, options);
  }
}

/** A guest layout that is malformed on its own (overlap, misalignment, zero size). */
export class InvalidLayoutError extends DmaError {
  constructor(message: string) {
    super('DMA_INVALID_LAYOUT', message);
  }
}

/** A guest range that collides with the host's IOVA ranges or a group's reserved regions. */
export class IovaCollisionError extends DmaError {
  constructor(
    message: string,
    readonly collisions: readonly string[],
  ) {
    super('DMA_IOVA_COLLISION', message, {
      details: collisions,
      hint: 'move guest RAM out of the host reserved windows and below the end of the host IOVA ranges, or give the guest an IOMMU',
    });
  }
}

/** A guest IOMMU operation its own IOMMU would refuse (an overlapping map, an IOVA past its address width...). */
export class GuestOpError extends DmaError {
  constructor(message: string) {
    super('DMA_GUEST_OP', message);
  }
}

/** More live host mappings than the container's `dma_entry_limit` allows (the kernel's ENOSPC). */
export class EntryLimitError extends DmaError {
  constructor(message: string) {
    super('DMA_ENTRY_LIMIT', message, {
      hint: 'raise the limit: modprobe vfio_iommu_type1 dma_entry_limit=N (or echo N > /sys/module/vfio_iommu_type1/parameters/dma_entry_limit)',
    });
  }
}

/** A map that the host would refuse for a reason the policy can see in advance (window end, page size...). */
export class HostRefusalError extends DmaError {
  constructor(message: string, details: readonly string[] = []) {
    super('DMA_HOST_REFUSAL', message, { details });
  }
}

/** A host call failed: carries the errno name the backend reported. */
export class DmaTargetError extends DmaError {
  constructor(
    message: string,
    readonly errno: string,
    cause?: unknown,
  ) {
    super('DMA_TARGET_FAILED', message, { cause });
  }
}

/** A trace that cannot be read or attributed. */
export class TraceError extends DmaError {
  constructor(message: string) {
    super('DMA_TRACE', message);
  }
}
