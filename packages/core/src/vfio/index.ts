// The TypeScript face of vfio-core: the addon's classes re-exported as they
// are, with the constants of linux/vfio.h that callers name. Every failure
// arrives as the addon throws it, a VfioError (code: the errno's name; errno,
// ioctl, object, entryIndex, hint): nothing here catches or rebuilds it.
// Callers import this module, never the addon, so one place says what core
// takes from it.
export {
  VfioBackend as VfioHost,
  Type1Container,
  IommufdSpace,
  TceContainer,
  Device,
  MappedRegion,
  HostMemory,
  GuestMemory,
  TakenOver,
  IommufdTakenOver,
  VfioError,
  coalesceRuns,
} from '@vfiokit/vfio-core';
export type {
  MockHostConfig,
  MockGroupConfig,
  MockDeviceConfig,
  MockDeviceModel,
  IommuInfo,
  IovaRange,
  BatchReport,
  GroupStatus,
  DeviceInfo,
  RegionInfo,
  IrqInfo,
  DependentDevice,
  IoasRanges,
  IommuHwInfo,
  LiveIrq,
  HandOverOutcome,
  TceInfo,
  /** A window as the host container reports it (`TceWindow` is the guest model's, in dma). */
  TceWindow as HostTceWindow,
} from '@vfiokit/vfio-core';

/** IOMMU types and features as `VFIO_CHECK_EXTENSION` numbers them (linux/vfio.h). */
export enum IommuType {
  Type1 = 1,
  SpaprTce = 2,
  Type1v2 = 3,
  DmaCc = 4,
  Eeh = 5,
  Type1Nesting = 6,
  SpaprTceV2 = 7,
  NoIommu = 8,
  UnmapAll = 9,
  UpdateVaddr = 10,
}

/** `VFIO_DMA_MAP_FLAG_*`: what the device may do to the mapped memory. */
export const DmaFlags = { Read: 1, Write: 2, ReadWrite: 3 } as const;

/** vfio-pci's fixed region indexes. */
export const PciRegion = { Bar0: 0, Bar1: 1, Bar2: 2, Bar3: 3, Bar4: 4, Bar5: 5, Rom: 6, Config: 7, Vga: 8 } as const;

/** Packs iova, vaddr, size triples into the typed array mapBatch takes. */
export function packTriples(entries: readonly (readonly [bigint, bigint, bigint])[]): BigUint64Array {
  const out = new BigUint64Array(entries.length * 3);
  entries.forEach(([iova, vaddr, size], i) => {
    out[3 * i] = iova;
    out[3 * i + 1] = vaddr;
    out[3 * i + 2] = size;
  });
  return out;
}
