// Typed wrappers for the QMP commands vfiokit uses. Shapes follow QEMU's
// qapi/*.json; each reader checks what it returns. No socket here: every
// function takes a QmpExecutor.
import type { ExecuteOptions, QmpExecutor } from '../qmp/executor';
import { arr, bool, num, obj, optStr, str, u64, type Json } from './reply';

export interface QemuVersion {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
  /** Distribution build string, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3". */
  readonly package: string;
}

/** qapi/control.json query-version */
export async function queryVersion(qmp: QmpExecutor): Promise<QemuVersion> {
  const r = obj(await qmp.execute('query-version'), 'query-version');
  const q = obj(r.qemu, 'query-version.qemu');
  return {
    major: num(q, 'major', 'query-version'),
    minor: num(q, 'minor', 'query-version'),
    micro: num(q, 'micro', 'query-version'),
    package: typeof r.package === 'string' ? r.package : '',
  };
}

export interface VmStatus {
  /** RunState: prelaunch, running, paused, shutdown, inmigrate, ... */
  readonly status: string;
  readonly running: boolean;
}

/** qapi/run-state.json query-status */
export async function queryStatus(qmp: QmpExecutor): Promise<VmStatus> {
  const r = obj(await qmp.execute('query-status'), 'query-status');
  return { status: str(r, 'status', 'query-status'), running: bool(r, 'running', 'query-status') };
}

export interface PciBridgeInfo {
  /** Secondary bus number; 0 while firmware has not numbered the bus yet. */
  readonly secondary: number;
  readonly subordinate: number;
  /** Devices behind the bridge; QEMU lists them only once `secondary` is set. */
  readonly devices: readonly PciDeviceInfo[];
}

export interface PciDeviceInfo {
  readonly bus: number;
  readonly slot: number;
  readonly function: number;
  /** Class code, e.g. 0x0604 for a PCI bridge. */
  readonly classCode: number;
  readonly vendorId: number;
  readonly deviceId: number;
  /** The -device id, or '' for a device created by the board. */
  readonly qdevId: string;
  readonly bridge?: PciBridgeInfo;
}

export interface PciBusInfo {
  readonly bus: number;
  readonly devices: readonly PciDeviceInfo[];
}

/** qapi/pci.json query-pci: root buses with their devices, bridges nested. */
export async function queryPci(qmp: QmpExecutor): Promise<PciBusInfo[]> {
  const r = arr(await qmp.execute('query-pci'), 'query-pci');
  return r.map((b) => {
    const bus = obj(b, 'query-pci bus');
    return { bus: num(bus, 'bus', 'query-pci bus'), devices: parsePciDevices(bus.devices) };
  });
}

function parsePciDevices(value: unknown): PciDeviceInfo[] {
  if (value === undefined) return [];
  return arr(value, 'query-pci devices').map((d) => {
    const dev = obj(d, 'query-pci device');
    const what = `query-pci device ${String(dev.qdev_id ?? '')}`;
    const id = obj(dev.id, what);
    const cls = obj(dev.class_info, what);
    const info: PciDeviceInfo = {
      bus: num(dev, 'bus', what),
      slot: num(dev, 'slot', what),
      function: num(dev, 'function', what),
      classCode: num(cls, 'class', what),
      vendorId: num(id, 'vendor', what),
      deviceId: num(id, 'device', what),
      qdevId: typeof dev.qdev_id === 'string' ? dev.qdev_id : '',
    };
    if (dev.pci_bridge === undefined) return info;
    const pb = obj(dev.pci_bridge, what);
    const pbBus = obj(pb.bus, what);
    return {
      ...info,
      bridge: {
        secondary: num(pbBus, 'secondary', what),
        subordinate: num(pbBus, 'subordinate', what),
        devices: parsePciDevices(pb.devices),
      },
    };
  });
}

/** Every device of query-pci's tree, depth first. */
export function flattenPci(buses: readonly PciBusInfo[]): PciDeviceInfo[] {
  const out: PciDeviceInfo[] = [];
  const walk = (devices: readonly PciDeviceInfo[]): void => {
    for (const d of devices) {
      out.push(d);
      if (d.bridge) walk(d.bridge.devices);
    }
  };
  for (const b of buses) walk(b.devices);
  return out;
}

export interface MemorySizeSummary {
  /** RAM given with -m (the initial RAM). */
  readonly baseMemory: bigint;
  /** Memory in memory devices (DIMMs, virtio-mem, ...), if any. */
  readonly pluggedMemory: bigint;
}

/** qapi/machine.json query-memory-size-summary */
export async function queryMemorySizeSummary(qmp: QmpExecutor): Promise<MemorySizeSummary> {
  const r = obj(await qmp.execute('query-memory-size-summary'), 'query-memory-size-summary');
  return {
    baseMemory: u64(r, 'base-memory', 'query-memory-size-summary'),
    pluggedMemory: r['plugged-memory'] === undefined ? 0n : u64(r, 'plugged-memory', 'query-memory-size-summary'),
  };
}

export type MemoryDeviceKind = 'dimm' | 'nvdimm' | 'virtio-pmem' | 'virtio-mem' | 'sgx-epc' | 'hv-balloon';

export interface MemoryDevice {
  readonly kind: MemoryDeviceKind;
  readonly id?: string;
  /** Guest physical address of the device's memory region. */
  readonly address: bigint;
  /** Size of the region (for virtio-mem the plugged size is `pluggedSize`). */
  readonly size: bigint;
  /** virtio-mem only: how much of the region the guest has plugged. */
  readonly pluggedSize?: bigint;
  readonly memdev?: string;
}

/** qapi/machine.json query-memory-devices */
export async function queryMemoryDevices(qmp: QmpExecutor): Promise<MemoryDevice[]> {
  const r = arr(await qmp.execute('query-memory-devices'), 'query-memory-devices');
  return r.map((entry) => {
    const e = obj(entry, 'query-memory-devices entry');
    const kind = str(e, 'type', 'query-memory-devices entry') as MemoryDeviceKind;
    const what = `query-memory-devices ${kind}`;
    const d = obj(e.data, what);
    // PCDIMMDeviceInfo has `addr`; virtio-mem, virtio-pmem and sgx-epc `memaddr`.
    const addrKey = d.addr !== undefined ? 'addr' : 'memaddr';
    const base = {
      kind,
      id: optStr(d, 'id', what),
      address: u64(d, addrKey, what),
      size: u64(d, kind === 'virtio-mem' ? 'max-size' : 'size', what),
      memdev: optStr(d, 'memdev', what),
    };
    return kind === 'virtio-mem' ? { ...base, pluggedSize: u64(d, 'size', what) } : base;
  });
}

export interface QomProperty {
  readonly name: string;
  /** e.g. 'bool', 'child<pcie-root-port>', 'link<e1000e>' */
  readonly type: string;
}

/** qapi/qom.json qom-list */
export async function qomList(qmp: QmpExecutor, path: string): Promise<QomProperty[]> {
  const r = arr(await qmp.execute('qom-list', { path }), `qom-list ${path}`);
  return r.map((p) => {
    const o = obj(p, `qom-list ${path}`);
    return { name: str(o, 'name', `qom-list ${path}`), type: str(o, 'type', `qom-list ${path}`) };
  });
}

/** qapi/qom.json qom-get; the value's type depends on the property. */
export async function qomGet(qmp: QmpExecutor, path: string, property: string): Promise<unknown> {
  return qmp.execute('qom-get', { path, property });
}

export interface QomType {
  readonly name: string;
  readonly parent?: string;
  readonly abstract: boolean;
}

/** qapi/qom.json qom-list-types */
export async function qomListTypes(
  qmp: QmpExecutor,
  filter: { readonly implements?: string; readonly abstract?: boolean } = {},
): Promise<QomType[]> {
  const args: Json = {};
  if (filter.implements !== undefined) args.implements = filter.implements;
  if (filter.abstract !== undefined) args.abstract = filter.abstract;
  const r = arr(await qmp.execute('qom-list-types', args), 'qom-list-types');
  return r.map((t) => {
    const o = obj(t, 'qom-list-types');
    return { name: str(o, 'name', 'qom-list-types'), parent: optStr(o, 'parent', 'qom-list-types'), abstract: o.abstract === true };
  });
}

export interface DeviceProperty {
  readonly name: string;
  readonly type: string;
  readonly description?: string;
  readonly defaultValue?: unknown;
}

/** qapi/qdev.json device-list-properties */
export async function deviceListProperties(qmp: QmpExecutor, typename: string): Promise<DeviceProperty[]> {
  const r = arr(await qmp.execute('device-list-properties', { typename }), `device-list-properties ${typename}`);
  return r.map((p) => {
    const o = obj(p, `device-list-properties ${typename}`);
    return {
      name: str(o, 'name', typename),
      type: str(o, 'type', typename),
      description: optStr(o, 'description', typename),
      defaultValue: o['default-value'],
    };
  });
}

/** Properties of device_add besides driver and id; values as QEMU's -device takes them. */
export type DeviceProperties = Readonly<Record<string, string | number | boolean>>;

/** qapi/qdev.json device_add. Resolves once the device is realized. */
export async function deviceAdd(
  qmp: QmpExecutor,
  driver: string,
  id: string,
  properties: DeviceProperties = {},
  options?: ExecuteOptions,
): Promise<void> {
  await qmp.execute('device_add', { driver, id, ...properties }, options);
}

/**
 * qapi/qdev.json device_del. QEMU only *requests* the unplug here: for PCIe it
 * presses the slot's attention button and the device stays until the guest
 * powers the slot off. Wait for DEVICE_DELETED (see hotplug) to know it left.
 */
export async function deviceDel(qmp: QmpExecutor, id: string, options?: ExecuteOptions): Promise<void> {
  await qmp.execute('device_del', { id }, options);
}

export interface SchemaCommand {
  readonly name: string;
  readonly allowOob: boolean;
}

export interface QmpSchema {
  readonly commands: ReadonlyMap<string, SchemaCommand>;
  readonly events: ReadonlySet<string>;
}

/**
 * qapi/introspect.json query-qmp-schema. Only command and event names are
 * kept: type names in the answer are masked numbers, and device properties
 * are not in the schema at all (device_add takes any), hence the probe uses
 * device-list-properties for those.
 */
export async function queryQmpSchema(qmp: QmpExecutor): Promise<QmpSchema> {
  const r = arr(await qmp.execute('query-qmp-schema'), 'query-qmp-schema');
  const commands = new Map<string, SchemaCommand>();
  const events = new Set<string>();
  for (const entry of r) {
    const e = obj(entry, 'query-qmp-schema entry');
    const metaType = e['meta-type'];
    if (metaType === 'command') {
      const name = str(e, 'name', 'query-qmp-schema command');
      commands.set(name, { name, allowOob: e['allow-oob'] === true });
    } else if (metaType === 'event') {
      events.add(str(e, 'name', 'query-qmp-schema event'));
    }
  }
  return { commands, events };
}

