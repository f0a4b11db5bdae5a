// The host as the kernel shows it in sysfs: plain readonly data, built by
// `discoverHost` and read by everything else (viability, safety, bind, the CLI).
import type { ReservedRegion } from '../dma/target';
import type { AcsInfo, HeaderType, PcieType } from './config-space';
import type { MsiIsolation } from './msi-isolation';
import type { PciNames } from './pci-ids';

export type { ReservedRegion };

/** SR-IOV state of a physical function (`sriov_totalvfs`, `sriov_numvfs`, `virtfnN`). */
export interface SriovPhysicalFunction {
  readonly totalVfs: number;
  readonly numVfs: number;
  /** Addresses of the enabled VFs, in `virtfnN` order. */
  readonly virtualFunctions: readonly string[];
}

/** One BAR, from the `resource` file. */
export interface PciBar {
  readonly index: number;
  readonly start: bigint;
  readonly size: bigint;
  readonly kind: 'mem' | 'io';
  readonly prefetchable: boolean;
  readonly is64: boolean;
}

/** One PCI function, as /sys/bus/pci/devices/ADDRESS describes it. */
export interface PciDevice {
  /** `0000:01:00.0`: the sysfs name. */
  readonly address: string;
  /** Where sysfs keeps it (`/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0`): the path is the topology. */
  readonly sysfsPath: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly subsystemVendorId?: number;
  readonly subsystemDeviceId?: number;
  /** 24-bit class code: base class, subclass, programming interface. */
  readonly classCode: number;
  readonly revision?: number;
  /** Names from pci.ids; empty when the host has no database or it lacks the ids. */
  readonly names: PciNames;
  /** The bound driver (`driver` link), absent when none is bound. */
  readonly driver?: string;
  /** `driver_override`, absent when it reads `(null)`. */
  readonly driverOverride?: string;
  /** IOMMU group number, absent when the device has none (no IOMMU). */
  readonly iommuGroup?: number;
  /** NUMA node, absent when the kernel says -1 or does not say. */
  readonly numaNode?: number;
  readonly headerType: HeaderType;
  /** A PCI-to-PCI or CardBus bridge (header type 1 or 2, or class 06 04 / 06 07 / 06 09). */
  readonly isBridge: boolean;
  /** The PCIe port type when the PCIe capability is readable. */
  readonly pcieType?: PcieType;
  /** ACS, when the extended config space is readable (as root) and the port has it. */
  readonly acs?: AcsInfo;
  /** The PCI bridge this device sits behind, absent on a root bus. */
  readonly upstream?: string;
  /** The host bridge (root bus) it descends from: `pci0000:00`. */
  readonly hostBridge: string;
  /** `boot_vga` = 1: the firmware's console display (vga_arbiter's default device). */
  readonly bootVga: boolean;
  /** Set on an SR-IOV physical function. */
  readonly sriov?: SriovPhysicalFunction;
  /** On a virtual function: its physical function's address (`physfn`). */
  readonly physicalFunction?: string;
  /**
   * The N of the device's VFIO cdev, /dev/vfio/devices/vfioN (its
   * `vfio-dev/vfioN/dev` sysfs node: the entry itself exists on any kernel
   * since 6.1, its `dev` only with CONFIG_VFIO_DEVICE_CDEV), the device
   * bound to a vfio driver. Bound to an iommufd, the device
   * is assigned on its own, not with its whole group.
   */
  readonly vfioCdev?: number;
  /** `reset_method`: the resets the kernel can do (flr, pm, bus...), when it says. */
  readonly resetMethods?: readonly string[];
  /** Assigned BARs 0-5 (unassigned ones are left out). */
  readonly bars: readonly PciBar[];
}

/** Which POWER partitionable endpoint a group is (its name, `domainD-peN`, from iommu_register_group). */
export interface PartitionableEndpoint {
  readonly domain: number;
  readonly pe: number;
}

/** One IOMMU group, /sys/kernel/iommu_groups/N. */
export interface IommuGroup {
  readonly id: number;
  readonly devices: readonly PciDevice[];
  /** `reserved_regions`, as start + size (the file gives inclusive ends). */
  readonly reservedRegions: readonly ReservedRegion[];
  /** `type`: the default domain type (`DMA`, `DMA-FQ`, `identity`, `blocked`), when shown. */
  readonly domainType?: string;
  /** `name`, when the IOMMU driver set one (POWER's `domain0-pe1`, `vfio-noiommu`). */
  readonly name?: string;
  /** On POWER: the PE this group is. */
  readonly pe?: PartitionableEndpoint;
  /**
   * Members that are not PCI functions (platform devices behind an ARM SMMU,
   * say): they count for viability like any device.
   */
  readonly otherDevices?: readonly GroupMember[];
}

/** A non-PCI member of an IOMMU group. */
export interface GroupMember {
  /** Its name in the group's `devices` folder. */
  readonly name: string;
  /** Its bus (`platform`, `amba`), from its `subsystem` link. */
  readonly bus?: string;
  readonly driver?: string;
}

/** The kinds of host IOMMU vfiokit tells apart. */
export type IommuKind = 'intel-vtd' | 'amd-vi' | 'arm-smmu' | 'arm-smmu-v3' | 'spapr-tce' | 'virtio-iommu' | 'unknown';

/** Whether the host has an IOMMU in use, and which. */
export interface HostIommu {
  /** True when the kernel made IOMMU groups (what VFIO needs). */
  readonly present: boolean;
  /** The kind, when there is one. */
  readonly kind?: IommuKind;
  /** IOMMU units (/sys/class/iommu entries: dmar0, ivhd0, iommu-phb0000...). */
  readonly units: readonly string[];
  /**
   * Input address width in bits the IOMMU translates, when its units show it
   * (VT-d: MGAW of the `intel-iommu/cap` register; the smallest over all
   * units). IOVAs at or above 2^addressWidth cannot be mapped.
   */
  readonly addressWidth?: number;
  /**
   * vfio's `enable_unsafe_noiommu_mode` is on: vfio-pci then takes devices
   * without any IOMMU, with no DMA isolation (DPDK's last resort). vfiokit
   * reports it and does not manage such devices.
   */
  readonly unsafeNoIommuMode: boolean;
  /**
   * Whether MSIs of assigned devices are isolated (x86 interrupt remapping,
   * Arm's GIC ITS), and vfio_iommu_type1's allow_unsafe_interrupts: without
   * either, VFIO_SET_IOMMU fails with EPERM (msi-isolation.ts).
   */
  readonly msiIsolation: MsiIsolation;
}

/** A PCI host bridge (root bus); on POWER each is a PHB, its own PCI domain. */
export interface HostBridge {
  /** `pci0000:00`. */
  readonly name: string;
  readonly domain: number;
  readonly rootBus: number;
  /** Every device below it. */
  readonly devices: readonly string[];
  /** IOMMU groups of those devices, ascending. */
  readonly groups: readonly number[];
}

/** The CPU architecture family, as far as it changes what VFIO does. */
export type HostPlatform = 'x86' | 'power' | 'arm' | 'other';

/** Everything discovery found. */
export interface HostModel {
  readonly platform: HostPlatform;
  /** `/proc/sys/kernel/osrelease`, when readable. */
  readonly kernelRelease?: string;
  /** `/proc/cmdline`, when readable (it says whether the IOMMU was turned off). */
  readonly kernelCommandLine?: string;
  readonly iommu: HostIommu;
  /** All PCI devices, by address. */
  readonly devices: readonly PciDevice[];
  /** All IOMMU groups, by number. */
  readonly groups: readonly IommuGroup[];
  readonly hostBridges: readonly HostBridge[];
  /** /sys/bus/pci/drivers/vfio-pci exists. */
  readonly vfioPciLoaded: boolean;
  /**
   * The kernel offers iommufd: /dev/iommu exists (its misc device shows as
   * /sys/class/misc/iommu; drivers/iommu/iommufd/main.c registers it as
   * "iommu"). Debian's kernels are built without CONFIG_IOMMUFD.
   */
  readonly iommufd: boolean;
  /**
   * The kernel has VFIO device cdevs (CONFIG_VFIO_DEVICE_CDEV): /proc/devices
   * lists the `vfio-dev` char major vfio_cdev_init registers (the sysfs
   * `vfio-dev/vfioN` entries exist on any kernel since 6.1, cdev or not).
   * Absent when /proc/devices cannot be read.
   */
  readonly vfioCdevs?: boolean;
  /** The pci.ids file names came from, absent when the host has none. */
  readonly pciIdsSource?: string;
}
