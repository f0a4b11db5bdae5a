// How host objects read at the terminal and in JSON. One place, so `ls`,
// `show` and `check` print a device the same way.
import type { HostModel, IommuGroup, PciDevice } from '@vfiokit/core';

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

export function hexAddr(n: bigint): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** `10de:1b80`, as lspci -n prints ids. */
export function idsOf(d: PciDevice): string {
  return `${hex4(d.vendorId)}:${hex4(d.deviceId)}`;
}

/** `VGA compatible controller: NVIDIA Corporation GP104 [GeForce GTX 1080]`, or the class code when pci.ids is absent. */
export function nameOf(d: PciDevice): string {
  const cls = d.names.className ?? `class ${d.classCode.toString(16).padStart(6, '0')}`;
  const who = [d.names.vendor, d.names.device].filter((x) => x !== undefined).join(' ');
  return who ? `${cls}: ${who}` : cls;
}

/** One line for a device: address, ids, name, driver. */
export function deviceLine(d: PciDevice): string {
  const driver = d.driver ? `driver ${d.driver}` : 'no driver';
  const marks = [d.bootVga ? 'boot VGA' : undefined, d.isBridge ? 'bridge' : undefined, d.physicalFunction ? `VF of ${d.physicalFunction}` : undefined]
    .filter((x) => x !== undefined)
    .join(', ');
  return `${d.address}  ${idsOf(d)}  ${nameOf(d)}  [${driver}]${marks ? `  (${marks})` : ''}`;
}

/** A device as JSON: ids as hex strings, the way sysfs and lspci show them. */
export function deviceJson(d: PciDevice) {
  return {
    address: d.address,
    vendorId: hex4(d.vendorId),
    deviceId: hex4(d.deviceId),
    classCode: d.classCode.toString(16).padStart(6, '0'),
    names: d.names,
    driver: d.driver ?? null,
    driverOverride: d.driverOverride ?? null,
    iommuGroup: d.iommuGroup ?? null,
    numaNode: d.numaNode ?? null,
    isBridge: d.isBridge,
    bootVga: d.bootVga,
    upstream: d.upstream ?? null,
    hostBridge: d.hostBridge,
    physicalFunction: d.physicalFunction ?? null,
    sriov: d.sriov ?? null,
    resetMethods: d.resetMethods ?? null,
    bars: d.bars.map((b) => ({ index: b.index, start: hexAddr(b.start), size: `0x${b.size.toString(16)}`, kind: b.kind, prefetchable: b.prefetchable, is64: b.is64 })),
  };
}

export function reservedRegionsJson(g: IommuGroup) {
  return g.reservedRegions.map((r) => ({ start: hexAddr(r.start), end: hexAddr(r.start + r.size - 1n), type: r.type }));
}

/** `BAR0 mem 0xf6000000 16 MiB 64-bit prefetchable`. */
export function barLine(b: PciDevice['bars'][number]): string {
  const size = b.size >= 1n << 20n ? `${b.size >> 20n} MiB` : b.size >= 1n << 10n ? `${b.size >> 10n} KiB` : `${b.size} bytes`;
  return `BAR${b.index} ${b.kind} ${hexAddr(b.start)} ${size}${b.is64 ? ' 64-bit' : ''}${b.prefetchable ? ' prefetchable' : ''}`;
}

/** `intel-vtd (dmar0, dmar1)`, or why there is none. */
export function iommuLine(model: HostModel): string {
  if (!model.iommu.present) return 'no IOMMU groups: the IOMMU is off or absent, so no device can be assigned';
  const units = model.iommu.units.length > 0 ? ` (${model.iommu.units.join(', ')})` : '';
  return `${model.iommu.kind ?? 'unknown'}${units}`;
}
