// The guest as the DMA policy sees it: where its RAM is, which IOMMU it has,
// and whether it has turned that IOMMU on. Plain readonly data; qemu-bridge
// builds a `GuestMemoryLayout` from a running QEMU, the CLI from a guest spec.
//
// Addresses and sizes are bigint: sPAPR's 64-bit DMA window starts at
// 0x800000000000000 (QEMU's SPAPR_PCI_DMA64_START), past 2^53.

/** A half-open guest-physical or IOVA range [start, start + size). */
export interface AddressRange {
  readonly start: bigint;
  readonly size: bigint;
}

/** Where a RAM region came from: boot memory or a hot-plugged DIMM. */
export type RamSource = 'boot' | 'hotplug';

/** One contiguous piece of guest RAM. */
export interface RamRegion {
  /** A name that a person can find again: `ram-below-4g`, `dimm0` (QEMU's memory-device id). */
  readonly name: string;
  /** Guest physical address of the first byte. */
  readonly gpa: bigint;
  readonly size: bigint;
  readonly source: RamSource;
  /**
   * Host virtual address of the first byte in the VMM process, the `vaddr` of
   * `VFIO_IOMMU_MAP_DMA`. Absent when the layout came from QMP, which does not
   * tell it; `placeRam` assigns one for simulations.
   */
  readonly hva?: bigint;
}

/** A device BAR as the guest placed it (the compatibility check needs it: peer-to-peer DMA targets BARs). */
export interface GuestBar {
  /** `0000:01:00.0 BAR0`, or whatever names it for a person. */
  readonly name: string;
  readonly gpa: bigint;
  readonly size: bigint;
}

/**
 * The guest-physical memory map: RAM regions sorted by address, not
 * overlapping, each page-aligned. The gaps between them are holes (the PCI
 * hole below 4 GiB on q35, for instance).
 */
export interface GuestMemoryLayout {
  readonly regions: readonly RamRegion[];
  /** BARs of assigned or emulated devices, when known. */
  readonly bars?: readonly GuestBar[];
}

/** IOMMU capabilities common to every guest IOMMU model. */
export interface GuestIommuCaps {
  /** Bitmap of page sizes the guest IOMMU can map, as `iova_pgsizes` in `vfio_iommu_type1_info`. */
  readonly pageSizes: bigint;
  /** Number of IOVA bits the guest IOMMU translates (VT-d `aw-bits`: 39 or 48). */
  readonly addressWidth: number;
  /** IOVA ranges the guest may map into (virtio-iommu's input range; VT-d: [0, 2^aw)). */
  readonly iovaRanges: readonly AddressRange[];
}

/** Emulated Intel VT-d (`-device intel-iommu`). */
export interface VtdIommu extends GuestIommuCaps {
  readonly kind: 'vtd';
  /** `caching-mode=on`: required for vfio-pci behind a vIOMMU (QEMU's vtd_iommu_notify_flag_changed refuses otherwise). */
  readonly cachingMode: boolean;
  /** Whether the guest has set DMA remapping on (GCMD.TE). */
  readonly enabled: boolean;
}

/** `-device virtio-iommu-pci`. */
export interface VirtioIommu extends GuestIommuCaps {
  readonly kind: 'virtio-iommu';
  /** Whether endpoints are attached to translating domains (false: bypass, as before the driver probes). */
  readonly enabled: boolean;
}

/** A TCE (DMA) window of a pseries PE. */
export interface TceWindow {
  /** 0: the default 32-bit window; 1: the dynamic (DDW) 64-bit one. */
  readonly index: 0 | 1;
  /** Bus address of the first byte (the window's `start_addr`). */
  readonly start: bigint;
  readonly size: bigint;
  /** log2 of the TCE page size (12 for 4 KiB, 16 for 64 KiB, 21 for 2 MiB...). */
  readonly pageShift: number;
}

/** pseries TCE translation (`-M pseries`): always on, one set of windows per PE. */
export interface SpaprTceIommu extends GuestIommuCaps {
  readonly kind: 'spapr-tce';
  /** The default 32-bit window each PE starts with (QEMU: 1 GiB at 0 by default). */
  readonly defaultWindow: TceWindow;
  /** Whether the guest may create a dynamic 64-bit window (QEMU's `ddw` property). */
  readonly ddw: boolean;
  /** TCE page shifts the guest may ask for (QEMU's `pgsz` property). */
  readonly pageShifts: readonly number[];
  /** Largest window the host offers per PE, bytes (from `VFIO_IOMMU_SPAPR_TCE_GET_INFO`'s `ddw` caps). */
  readonly maxWindowSize?: bigint;
  readonly enabled: true;
}

/** The guest's IOMMU, or none. */
export type GuestIommu = { readonly kind: 'none' } | VtdIommu | VirtioIommu | SpaprTceIommu;

/** A guest as the DMA policy needs it. */
export interface GuestModel {
  readonly name: string;
  readonly arch: 'x86_64' | 'ppc64';
  readonly memory: GuestMemoryLayout;
  readonly iommu: GuestIommu;
}

/** Whether DMA from assigned devices is translated by the guest's own tables right now. */
export function translationEnabled(iommu: GuestIommu): boolean {
  return iommu.kind !== 'none' && iommu.enabled;
}

/** Total RAM of a layout, bytes. */
export function ramSize(layout: GuestMemoryLayout): bigint {
  let total = 0n;
  for (const r of layout.regions) total += r.size;
  return total;
}

/** VT-d as QEMU emulates it: 4K/2M/1G pages, `aw-bits` 39 by default (48 optional). */
export function vtdIommu(opts: { addressWidth?: 39 | 48; enabled?: boolean; cachingMode?: boolean } = {}): VtdIommu {
  const aw = opts.addressWidth ?? 39;
  return {
    kind: 'vtd',
    pageSizes: 0x40201000n,
    addressWidth: aw,
    iovaRanges: [{ start: 0n, size: 1n << BigInt(aw) }],
    cachingMode: opts.cachingMode ?? true,
    enabled: opts.enabled ?? false,
  };
}

/** virtio-iommu as QEMU emulates it: 4 KiB granule, a 64-bit input range by default. */
export function virtioIommu(
  opts: { enabled?: boolean; pageSizes?: bigint; inputRange?: AddressRange; addressWidth?: number } = {},
): VirtioIommu {
  const aw = opts.addressWidth ?? 64;
  return {
    kind: 'virtio-iommu',
    pageSizes: opts.pageSizes ?? 0xfffffffffffff000n,
    addressWidth: aw,
    iovaRanges: [opts.inputRange ?? { start: 0n, size: 1n << BigInt(aw) }],
    enabled: opts.enabled ?? false,
  };
}

/** QEMU's SPAPR_PCI_DMA64_START: the bus address of a pseries 64-bit DMA window. */
export const SPAPR_DMA64_START = 0x800000000000000n;

/** pseries TCE as QEMU 7.2+ sets it up: a 1 GiB 4 KiB-page default window at 0, DDW on. */
export function spaprTceIommu(
  opts: { dma32Size?: bigint; pageShifts?: readonly number[]; ddw?: boolean; maxWindowSize?: bigint } = {},
): SpaprTceIommu {
  const pageShifts = opts.pageShifts ?? [12, 16];
  const dma32 = opts.dma32Size ?? 1n << 30n;
  let pageSizes = 0n;
  for (const s of pageShifts) pageSizes |= 1n << BigInt(s);
  return {
    kind: 'spapr-tce',
    pageSizes,
    addressWidth: 64,
    iovaRanges: [{ start: 0n, size: dma32 }, { start: SPAPR_DMA64_START, size: opts.maxWindowSize ?? 1n << 40n }],
    defaultWindow: { index: 0, start: 0n, size: dma32, pageShift: 12 },
    ddw: opts.ddw ?? true,
    pageShifts,
    ...(opts.maxWindowSize !== undefined ? { maxWindowSize: opts.maxWindowSize } : {}),
    enabled: true,
  };
}
