// Discovery: read the host's PCI devices, IOMMU groups and IOMMU from sysfs
// (and a little of /proc) through the HostFs seam. Sync: it waits on nothing
// but the file system, and sysfs answers from memory.
import * as path from 'node:path';
import { isPciAddress, normalizePciAddress } from './address';
import { parseConfigSpace } from './config-space';
import { DeviceNotFoundError, GroupNotFoundError } from './errors';
import type {
  HostBridge,
  HostIommu,
  HostModel,
  HostPlatform,
  IommuGroup,
  IommuKind,
  PartitionableEndpoint,
  PciBar,
  PciDevice,
  ReservedRegion,
  SriovPhysicalFunction,
} from './model';
import { readMsiIsolation } from './msi-isolation';
import { loadPciIds, type PciIds } from './pci-ids';
import { resolveLink, type HostFs } from './seam';

export const PCI_DEVICES = '/sys/bus/pci/devices';
export const PCI_DRIVERS = '/sys/bus/pci/drivers';
export const IOMMU_GROUPS = '/sys/kernel/iommu_groups';
export const CLASS_IOMMU = '/sys/class/iommu';

/** Options for discovery. */
export interface DiscoverOptions {
  /** A pci.ids database already loaded (the CLI loads it once); default: read the host's. */
  readonly pciIds?: PciIds;
}

/** Read the whole host. */
export function discoverHost(host: HostFs, options: DiscoverOptions = {}): HostModel {
  const pciIds = options.pciIds ?? loadPciIds(host);
  const devices = host
    .list(PCI_DEVICES)
    .filter(isPciAddress)
    .map((a) => readPciDevice(host, a, pciIds))
    .filter((d): d is PciDevice => d !== undefined);
  const byAddress = new Map(devices.map((d) => [d.address, d]));
  const groups = host
    .list(IOMMU_GROUPS)
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b)
    .map((id) => readGroup(host, id, byAddress));
  const platform = readPlatform(host);
  const kernelRelease = host.readText('/proc/sys/kernel/osrelease')?.trim();
  const kernelCommandLine = host.readText('/proc/cmdline')?.trim();
  return {
    platform,
    ...(kernelRelease ? { kernelRelease } : {}),
    ...(kernelCommandLine ? { kernelCommandLine } : {}),
    iommu: readIommu(host, groups.length > 0, platform),
    devices,
    groups,
    hostBridges: hostBridgesOf(devices),
    vfioPciLoaded: host.exists(`${PCI_DRIVERS}/vfio-pci`),
    iommufd: host.exists('/sys/class/misc/iommu'),
    ...vfioCdevsOf(host),
    ...(pciIds.source === undefined ? {} : { pciIdsSource: pciIds.source }),
  };
}

/** vfio_cdev_init's char region (`NNN vfio-dev` in /proc/devices), when /proc/devices is readable. */
function vfioCdevsOf(host: HostFs): { vfioCdevs?: boolean } {
  const devices = host.readText('/proc/devices');
  return devices === undefined ? {} : { vfioCdevs: /^\s*\d+ vfio-dev$/m.test(devices) };
}

/** Read one device; undefined when it is gone (a hot-unplug between list and read). */
export function readPciDevice(host: HostFs, address: string, pciIds: PciIds): PciDevice | undefined {
  const link = `${PCI_DEVICES}/${address}`;
  const sysfsPath = resolveLink(host, link);
  const vendorId = readHex(host, `${link}/vendor`);
  const deviceId = readHex(host, `${link}/device`);
  const classCode = readHex(host, `${link}/class`);
  if (sysfsPath === undefined || vendorId === undefined || deviceId === undefined || classCode === undefined) {
    return undefined;
  }
  const subsystemVendorId = readHex(host, `${link}/subsystem_vendor`);
  const subsystemDeviceId = readHex(host, `${link}/subsystem_device`);
  const revision = readHex(host, `${link}/revision`);
  const driver = basenameOfLink(host, `${link}/driver`);
  const override = host.readText(`${link}/driver_override`)?.trim();
  const group = basenameOfLink(host, `${link}/iommu_group`);
  const numa = readInt(host, `${link}/numa_node`);
  // Each config read is a real config cycle (and wakes a suspended device),
  // so read the 256-byte header and capability list first, and the extended
  // space only where ACS matters: ports and the functions of multi-function
  // devices (bit 7 of the header type is set on function 0 only).
  let config = parseConfigSpace(host.readBytes(`${link}/config`, 256));
  const multifunction = config?.multifunction === true || !address.endsWith('.0');
  if (config?.pcieType !== undefined && (config.headerType !== 'normal' || multifunction)) {
    config = parseConfigSpace(host.readBytes(`${link}/config`, 4096)) ?? config;
  }
  const base = classCode >> 8;
  // Class 06 04 (PCI bridge), 06 07 (CardBus), 06 09 (semi-transparent): the
  // header type says the same when config is readable; class is the fallback.
  const isBridge =
    config?.headerType === 'bridge' ||
    config?.headerType === 'cardbus' ||
    (config === undefined && (base === 0x0604 || base === 0x0607 || base === 0x0609));
  const components = sysfsPath.split('/');
  const self = components.lastIndexOf(address);
  const parent = self > 0 ? components[self - 1]! : '';
  const hostBridge = components.find((c) => /^pci[0-9a-f]{4,8}:[0-9a-f]{2}$/.test(c)) ?? 'unknown';
  const resetMethods = host.readText(`${link}/reset_method`)?.trim();
  const physfn = basenameOfLink(host, `${link}/physfn`);
  const names = pciIds.namesFor({
    vendorId,
    deviceId,
    classCode,
    ...(subsystemVendorId === undefined ? {} : { subsystemVendorId }),
    ...(subsystemDeviceId === undefined ? {} : { subsystemDeviceId }),
  });
  const sriov = readSriov(host, link);
  // vfio_device_add puts the device's class device under the PCI device;
  // only with CONFIG_VFIO_DEVICE_CDEV does it have a dev_t (its `dev` file).
  const cdev = host
    .list(`${link}/vfio-dev`)
    .filter((n) => host.exists(`${link}/vfio-dev/${n}/dev`))
    .map((n) => /^vfio(\d+)$/.exec(n)?.[1])
    .find((n) => n !== undefined);
  return {
    address,
    sysfsPath,
    vendorId,
    deviceId,
    ...(subsystemVendorId === undefined ? {} : { subsystemVendorId }),
    ...(subsystemDeviceId === undefined ? {} : { subsystemDeviceId }),
    classCode,
    ...(revision === undefined ? {} : { revision }),
    names,
    ...(driver === undefined ? {} : { driver }),
    ...(override === undefined || override === '(null)' || override === '' ? {} : { driverOverride: override }),
    ...(group === undefined ? {} : { iommuGroup: Number(group) }),
    ...(numa === undefined || numa < 0 ? {} : { numaNode: numa }),
    headerType: config?.headerType ?? (isBridge ? 'bridge' : 'normal'),
    isBridge,
    ...(config?.pcieType === undefined ? {} : { pcieType: config.pcieType }),
    ...(config?.acs === undefined ? {} : { acs: config.acs }),
    ...(isPciAddress(parent) ? { upstream: parent } : {}),
    hostBridge,
    bootVga: host.readText(`${link}/boot_vga`)?.trim() === '1',
    ...(sriov === undefined ? {} : { sriov }),
    ...(physfn === undefined ? {} : { physicalFunction: physfn }),
    ...(cdev === undefined ? {} : { vfioCdev: Number(cdev) }),
    ...(resetMethods ? { resetMethods: resetMethods.split(/\s+/) } : {}),
    bars: parseResource(host.readText(`${link}/resource`) ?? ''),
  };
}

const IORESOURCE_IO = 0x100n;
const IORESOURCE_MEM = 0x200n;
const IORESOURCE_PREFETCH = 0x2000n;
const IORESOURCE_MEM_64 = 0x100000n;

/**
 * BARs 0-5 from the `resource` file: "start end flags" per line, as
 * resource_show (drivers/pci/pci-sysfs.c) prints them; a BAR the firmware
 * did not assign reads as zeros and is left out.
 */
export function parseResource(text: string): readonly PciBar[] {
  const bars: PciBar[] = [];
  text
    .split('\n')
    .slice(0, 6)
    .forEach((line, index) => {
      const f = line.trim().split(/\s+/);
      if (f.length < 3) return;
      const [start, end, flags] = f.map((x) => BigInt(x)) as [bigint, bigint, bigint];
      if (end === 0n || !(flags & (IORESOURCE_IO | IORESOURCE_MEM))) return;
      bars.push({
        index,
        start,
        size: end - start + 1n,
        kind: flags & IORESOURCE_IO ? 'io' : 'mem',
        prefetchable: (flags & IORESOURCE_PREFETCH) !== 0n,
        is64: (flags & IORESOURCE_MEM_64) !== 0n,
      });
    });
  return bars;
}

function readSriov(host: HostFs, link: string): SriovPhysicalFunction | undefined {
  const totalVfs = readInt(host, `${link}/sriov_totalvfs`);
  if (totalVfs === undefined) return undefined;
  const numVfs = readInt(host, `${link}/sriov_numvfs`) ?? 0;
  const virtualFunctions = host
    .list(link)
    .filter((n) => /^virtfn\d+$/.test(n))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((n) => basenameOfLink(host, `${link}/${n}`))
    .filter((a): a is string => a !== undefined);
  return { totalVfs, numVfs, virtualFunctions };
}

function readGroup(host: HostFs, id: number, byAddress: ReadonlyMap<string, PciDevice>): IommuGroup {
  const dir = `${IOMMU_GROUPS}/${id}`;
  const names = host.list(`${dir}/devices`);
  const devices = names.map((a) => byAddress.get(a)).filter((d): d is PciDevice => d !== undefined);
  const otherDevices = names
    .filter((n) => !byAddress.has(n))
    .map((name) => {
      const driver = basenameOfLink(host, `${dir}/devices/${name}/driver`);
      const bus = basenameOfLink(host, `${dir}/devices/${name}/subsystem`);
      return { name, ...(bus === undefined ? {} : { bus }), ...(driver === undefined ? {} : { driver }) };
    });
  const domainType = host.readText(`${dir}/type`)?.trim();
  const name = host.readText(`${dir}/name`)?.trim();
  const pe = name === undefined ? undefined : parsePeName(name);
  return {
    id,
    devices,
    reservedRegions: parseReservedRegions(host.readText(`${dir}/reserved_regions`) ?? ''),
    ...(domainType ? { domainType } : {}),
    ...(name ? { name } : {}),
    ...(pe === undefined ? {} : { pe }),
    otherDevices,
  };
}

/**
 * Parse `reserved_regions`: one region a line, "0x%016llx 0x%016llx %s\n"
 * (start, inclusive end, type), as iommu_group_show_resv_regions prints it.
 */
export function parseReservedRegions(text: string): readonly ReservedRegion[] {
  const regions: ReservedRegion[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const start = BigInt(`0x${m[1]}`);
    const end = BigInt(`0x${m[2]}`);
    regions.push({ start, size: end - start + 1n, type: m[3]! });
  }
  return regions;
}

/** POWER names each group after its PE: `domain%d-pe%lx` (iommu_register_group, arch/powerpc/kernel/iommu.c). */
export function parsePeName(name: string): PartitionableEndpoint | undefined {
  const m = /^domain(\d+)-pe([0-9a-f]+)$/.exec(name);
  return m ? { domain: Number(m[1]), pe: parseInt(m[2]!, 16) } : undefined;
}

function readPlatform(host: HostFs): HostPlatform {
  const cpuinfo = host.readText('/proc/cpuinfo') ?? '';
  if (/^platform\s*:\s*(PowerNV|pSeries)/m.test(cpuinfo) || /^cpu\s*:\s*POWER/m.test(cpuinfo)) return 'power';
  if (/^vendor_id\s*:\s*(GenuineIntel|AuthenticAMD|HygonGenuine)/m.test(cpuinfo)) return 'x86';
  if (/^CPU implementer\s*:/m.test(cpuinfo)) return 'arm';
  return 'other';
}

/**
 * Which IOMMU the host runs. Units register under /sys/class/iommu with
 * names their drivers choose: `dmar%d` (intel-iommu), `ivhd%d` (amd_iommu),
 * `smmu3.0x...` (arm-smmu-v3), `smmu.0x...` (arm-smmu), `iommu-phb%04x`
 * (powerpc's spapr_tce_setup_phb_iommus_initcall, 6.4 and later). Older
 * POWER kernels register no unit, but still make one group per PE.
 */
function readIommu(host: HostFs, hasGroups: boolean, platform: HostPlatform): HostIommu {
  const units = host.list(CLASS_IOMMU);
  const kinds = new Set<IommuKind>(units.map(iommuKindOfUnit));
  let kind: IommuKind | undefined = [...kinds][0];
  if (kind === undefined && hasGroups) kind = platform === 'power' ? 'spapr-tce' : 'unknown';
  const widths = units
    .map((u) => host.readText(`${CLASS_IOMMU}/${u}/intel-iommu/cap`)?.trim())
    .filter((c): c is string => c !== undefined && /^(0x)?[0-9a-fA-F]+$/.test(c))
    .map(vtdAddressWidth);
  const addressWidth = widths.length > 0 ? Math.min(...widths) : undefined;
  const noIommu = host.readText('/sys/module/vfio/parameters/enable_unsafe_noiommu_mode')?.trim();
  return {
    present: hasGroups,
    ...(kind === undefined ? {} : { kind }),
    units,
    ...(addressWidth === undefined ? {} : { addressWidth }),
    unsafeNoIommuMode: noIommu === 'Y' || noIommu === '1',
    msiIsolation: readMsiIsolation(host, platform, units),
  };
}

/** MGAW, bits 21:16 of the VT-d Capability Register, holds the width minus one (VT-d spec 11.4.2; cap_mgaw in intel-iommu.h). */
export function vtdAddressWidth(cap: string): number {
  return Number((BigInt(cap.startsWith('0x') ? cap : `0x${cap}`) >> 16n) & 0x3fn) + 1;
}

/** The IOMMU kind a /sys/class/iommu unit's name shows. */
export function iommuKindOfUnit(unit: string): IommuKind {
  if (/^dmar\d+$/.test(unit)) return 'intel-vtd';
  if (/^ivhd\d+$/.test(unit)) return 'amd-vi';
  if (unit.startsWith('smmu3.')) return 'arm-smmu-v3';
  if (unit.startsWith('smmu.') || unit.includes('smmu')) return 'arm-smmu';
  if (unit.startsWith('iommu-phb')) return 'spapr-tce';
  if (unit.startsWith('virtio')) return 'virtio-iommu';
  return 'unknown';
}

function hostBridgesOf(devices: readonly PciDevice[]): readonly HostBridge[] {
  const bridges = new Map<string, PciDevice[]>();
  for (const d of devices) {
    const list = bridges.get(d.hostBridge) ?? [];
    list.push(d);
    bridges.set(d.hostBridge, list);
  }
  return [...bridges.entries()]
    .filter(([name]) => name !== 'unknown')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, members]) => {
      const [domain, bus] = name.slice(3).split(':');
      const groups = [...new Set(members.map((d) => d.iommuGroup).filter((g): g is number => g !== undefined))];
      return {
        name,
        domain: parseInt(domain!, 16),
        rootBus: parseInt(bus!, 16),
        devices: members.map((d) => d.address),
        groups: groups.sort((a, b) => a - b),
      };
    });
}

/** The device at an address given in any accepted spelling; throws when malformed or absent. */
export function findDevice(model: HostModel, address: string): PciDevice {
  const canonical = normalizePciAddress(address);
  const found = model.devices.find((d) => d.address === canonical);
  if (!found) throw new DeviceNotFoundError(canonical);
  return found;
}

/** The IOMMU group with a number; throws GroupNotFoundError. */
export function findGroup(model: HostModel, id: number): IommuGroup {
  const found = model.groups.find((g) => g.id === id);
  if (!found) throw new GroupNotFoundError(id);
  return found;
}

function readHex(host: HostFs, file: string): number | undefined {
  const text = host.readText(file)?.trim();
  if (text === undefined || !/^(0x)?[0-9a-fA-F]+$/.test(text)) return undefined;
  return parseInt(text, 16);
}

function readInt(host: HostFs, file: string): number | undefined {
  const text = host.readText(file)?.trim();
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

function basenameOfLink(host: HostFs, link: string): string | undefined {
  const target = host.readLink(link);
  return target === undefined ? undefined : path.posix.basename(target);
}
