// What an address or a length means, in the type: where the DMA policy hands
// a mapping from one layer to the next (identity.ts and shadow.ts ->
// mappings.ts -> target.ts -> vfio-core), an IOVA, a guest-physical address,
// a host virtual address and a byte count are each their own type, so one
// cannot be passed for another, and none for a page count (`Pages`,
// intervals.ts). All are bigint underneath: sPAPR's 64-bit window starts past
// 2^53, and the batch that crosses napi is a BigUint64Array of them.

declare const unit: unique symbol;
type Branded<T, U extends string> = T & { readonly [unit]: U };

/** An I/O virtual address: what the device puts on the bus, the `iova` of VFIO_IOMMU_MAP_DMA. */
export type Iova = Branded<bigint, 'iova'>;
/** A guest-physical address: where the guest sees its RAM. */
export type Gpa = Branded<bigint, 'gpa'>;
/** A host virtual address in the VMM's process: the `vaddr` of VFIO_IOMMU_MAP_DMA. */
export type Hva = Branded<bigint, 'hva'>;
/** A length in bytes (never pages). */
export type Bytes = Branded<bigint, 'bytes'>;

/** Marks a value read from outside the policy (a layout, a trace, the kernel) as what it is. */
export const asIova = (n: bigint): Iova => n as Iova;
export const asGpa = (n: bigint): Gpa => n as Gpa;
export const asHva = (n: bigint): Hva => n as Hva;
export const asBytes = (n: bigint): Bytes => n as Bytes;

/**
 * The identity policy's one rule, IOVA = GPA (QEMU's
 * vfio_listener_region_add with no vIOMMU maps each RAM section at its
 * guest-physical address): the only place a GPA becomes an IOVA.
 */
export function identityIova(gpa: Gpa | bigint): Iova {
  return gpa as Iova;
}

