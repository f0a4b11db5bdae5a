// Hot-plug into a running VM: place a group's functions in free hot-pluggable
// PCIe slots, check QEMU put them there, and unplug with a bounded wait for
// the guest's consent (a PCIe unplug is a request to the guest, not an act).
import { formatBdf, layoutSlots, parseBdf, type PciAddress, type VfioDeviceSpec } from '../cmdline/layout';
import {
  deviceAdd,
  deviceDel,
  qomGet,
  qomList,
  qomListTypes,
  queryPci,
  queryStatus,
  type DeviceProperties,
  type PciDeviceInfo,
} from '../commands/queries';
import { closefd, getfd } from '../commands/fds';
import { HotplugError, QmpCommandError, QmpTimeoutError } from '../errors';
import type { QmpEventOf } from '../qmp/events';
import type { QmpExecutor } from '../qmp/executor';

/** User-created devices live here, named by their id (qdev_set_id()). */
const PERIPHERAL = '/machine/peripheral';

export interface RootPortInfo {
  readonly id: string;
  /** QOM type: pcie-root-port, ioh3420, xio3130-downstream, ... */
  readonly type: string;
  /** The slot's `hotplug` property (QEMU 5.2+; true when absent). */
  readonly hotplug: boolean;
  /** QOM paths of devices on the port's bus. */
  readonly occupants: readonly string[];
}

/**
 * Every PCIe slot (root or downstream port) created with an id, with whether
 * it takes hot-plug and what sits on it. Read from QOM rather than query-pci:
 * query-pci lists nothing behind a bridge whose bus firmware has not numbered
 * yet (VM in prelaunch), while QOM always knows (qmp_query_pci_bus()).
 */
export async function listRootPorts(qmp: QmpExecutor): Promise<RootPortInfo[]> {
  const slotTypes = new Set((await qomListTypes(qmp, { implements: 'pcie-slot', abstract: false })).map((t) => t.name));
  const ports: RootPortInfo[] = [];
  for (const child of await qomList(qmp, PERIPHERAL)) {
    const m = /^child<(.+)>$/.exec(child.type);
    if (!m || !slotTypes.has(m[1]!)) continue;
    const path = `${PERIPHERAL}/${child.name}`;
    let hotplug = true;
    try {
      hotplug = (await qomGet(qmp, path, 'hotplug')) !== false;
    } catch (err) {
      if (!(err instanceof QmpCommandError)) throw err; // property absent before QEMU 5.2
    }
    // A port's secondary bus is named after the port's id (qbus_init_internal()).
    const busPath = `${path}/${child.name}`;
    const links = (await qomList(qmp, busPath)).filter((p) => /^child\[\d+\]$/.test(p.name));
    const occupants: string[] = [];
    for (const link of links) occupants.push(String(await qomGet(qmp, busPath, link.name)));
    ports.push({ id: child.name, type: m[1]!, hotplug, occupants });
  }
  return ports.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
}

/** One function to plug into a slot. */
export interface PlugFunction {
  readonly id: string;
  readonly driver: string;
  readonly properties: DeviceProperties;
  readonly guestFunction: number;
  /**
   * A descriptor to pass with getfd before device_add; the device then gets
   * `fd=<name>` (vfio-pci's fd property). QEMU takes the named fd at
   * realize; one left unclaimed by a failed device_add is closed again.
   */
  readonly passFd?: number;
}

export interface PlacedDevice {
  readonly id: string;
  readonly rootPort: string;
  readonly function: number;
  /**
   * True when query-pci shows the device: the port's bus has a number, so
   * the guest can see it. False while firmware has not numbered the bus
   * (VM not started yet); QOM then proves the device is in place.
   */
  readonly guestVisible: boolean;
}

export interface AttachOptions {
  /** Ports to use, in order; default every free hot-pluggable port of the VM. */
  readonly rootPorts?: readonly string[];
  /** How long to wait for devices removed again when attaching fails part-way. Default 5 s. */
  readonly rollbackTimeoutMs?: number;
  /**
   * How long one device_add may take. Default 5 min: realizing the first
   * vfio-pci device of a guest without IOMMU pins all guest RAM before QEMU
   * answers (vfio_listener_region_add -> VFIO_IOMMU_MAP_DMA), which for a
   * large guest takes minutes, and the monitor is blocked meanwhile.
   */
  readonly deviceAddTimeoutMs?: number;
}

/**
 * Refuses, before anything is plugged, a request QEMU would only refuse
 * halfway: an id given twice or already in the VM, a slot without function 0.
 * Root ports and pseries host bridges take the same requests.
 */
async function checkPlugRequest(qmp: QmpExecutor, slots: readonly (readonly PlugFunction[])[]): Promise<void> {
  const ids = slots.flat().map((f) => f.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `device id ${dup} is given twice; each device needs its own id`);
  for (const slot of slots) {
    if (!slot.some((f) => f.guestFunction === 0)) {
      throw new HotplugError(
        'HOTPLUG_INVALID_REQUEST',
        `slot of ${slot.map((f) => f.id).join(', ')} has no function 0; a guest only scans a slot whose function 0 exists`,
      );
    }
  }
  const existing = new Set((await qomList(qmp, PERIPHERAL)).map((p) => p.name));
  const taken = ids.filter((id) => existing.has(id));
  if (taken.length > 0) {
    throw new HotplugError('HOTPLUG_INVALID_REQUEST', `the VM already has devices with id ${taken.join(', ')}; detach them or choose other ids`);
  }
}

/**
 * Plugs each slot's functions into its own free root port; returns where
 * each went. On failure removes what it added (as far as QEMU lets it
 * without a guest) and reports what remains.
 */
export async function attachSlots(
  qmp: QmpExecutor,
  slots: readonly (readonly PlugFunction[])[],
  options: AttachOptions = {},
): Promise<PlacedDevice[]> {
  await checkPlugRequest(qmp, slots);
  const ports = await listRootPorts(qmp);
  const free = ports.filter((p) => p.hotplug && p.occupants.length === 0);
  let chosen: RootPortInfo[];
  if (options.rootPorts) {
    chosen = options.rootPorts.map((id) => {
      const port = ports.find((p) => p.id === id);
      if (!port) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `the VM has no PCIe root port with id ${id}`);
      if (!port.hotplug) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `root port ${id} was created with hotplug=off`);
      if (port.occupants.length > 0) {
        throw new HotplugError('HOTPLUG_INVALID_REQUEST', `root port ${id} is occupied by ${port.occupants.join(', ')}`);
      }
      return port;
    });
  } else {
    chosen = free;
  }
  if (chosen.length < slots.length) {
    throw new HotplugError(
      'HOTPLUG_NO_FREE_SLOT',
      `need ${slots.length} free hot-pluggable PCIe root port(s), found ${chosen.length}` +
        `${chosen.length ? ` (${chosen.map((p) => p.id).join(', ')})` : ''}; q35's pcie.0 takes no hot-plug, ` +
        `so start the VM with spare ports (-device pcie-root-port,id=rpN,chassis=N) or detach devices first`,
    );
  }
  const added: string[] = [];
  const placed: { id: string; rootPort: string; function: number }[] = [];
  try {
    for (const [i, slot] of slots.entries()) {
      const port = chosen[i]!.id;
      const multi = slot.length > 1;
      // Function 0 last: QEMU announces the slot to the guest when function 0
      // arrives, and only then (pcie_cap_slot_plug_cb()).
      const order = [...slot].sort((a, b) => (a.guestFunction === 0 ? 1 : 0) - (b.guestFunction === 0 ? 1 : 0) || a.guestFunction - b.guestFunction);
      for (const f of order) {
        const props: Record<string, string | number | boolean> = { ...f.properties, bus: port, addr: `0.${f.guestFunction}` };
        if (multi && f.guestFunction === 0) props.multifunction = true;
        if (f.passFd !== undefined) {
          const fdname = `vfiokit-fd-${f.id}`;
          await getfd(qmp, fdname, f.passFd);
          props.fd = fdname;
          try {
            await deviceAdd(qmp, f.driver, f.id, props, { timeoutMs: options.deviceAddTimeoutMs ?? 300_000 });
          } catch (err) {
            // Realize took the fd out of the monitor's list if it got that far
            // (monitor_fd_param); otherwise it is still there: close it.
            await closefd(qmp, fdname).catch(() => {});
            throw err;
          }
        } else {
          await deviceAdd(qmp, f.driver, f.id, props, { timeoutMs: options.deviceAddTimeoutMs ?? 300_000 });
        }
        added.push(f.id);
        placed.push({ id: f.id, rootPort: port, function: f.guestFunction });
      }
    }
  } catch (err) {
    const remaining = await rollback(qmp, added, options.rollbackTimeoutMs ?? 5_000);
    const cause = err instanceof QmpCommandError ? `${err.desc}${hintFor(err.desc)}` : (err as Error).message;
    const last = slots.flat().find((f) => !added.includes(f.id));
    throw new HotplugError(
      'HOTPLUG_FAILED',
      `device_add of ${last?.id ?? 'a device'} failed: ${cause}` +
        (remaining.length
          ? `; ${remaining.join(', ')}, added before it, could not be removed again: ${remaining.length > 1 ? 'they stay' : 'it stays'} ` +
            `in the VM until a guest acknowledges the unplug or QEMU exits`
          : added.length
            ? '; devices added before it were removed'
            : ''),
      remaining,
      { cause: err },
    );
  }
  return verify(qmp, placed);
}

/** Hot-plugs a group's vfio-pci devices, one root port per host device. */
export async function attachGroup(
  qmp: QmpExecutor,
  devices: readonly VfioDeviceSpec[],
  options: AttachOptions = {},
): Promise<PlacedDevice[]> {
  const addressed: (VfioDeviceSpec & { address: PciAddress })[] = [];
  for (const d of devices) {
    const address = parseBdf(d.host);
    if (!address) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `${JSON.stringify(d.host)} is not a PCI address like 0000:01:00.0`);
    addressed.push({ ...d, address });
  }
  for (const d of addressed) {
    if (d.deviceFd !== undefined && d.iommufd === undefined) {
      // QEMU refuses it at realize (hw/vfio/pci.c: "Use FD passing only with
      // iommufd backend"): a device fd is a VFIO cdev fd, which only an
      // iommufd attaches; the legacy container finds groups through sysfs.
      throw new HotplugError(
        'HOTPLUG_INVALID_REQUEST',
        `${formatBdf(d.address)}: a device fd needs an iommufd object to attach to; give iommufd (the id of ` +
          `-object iommufd,id=ID) or drop deviceFd and let QEMU open the group itself`,
      );
    }
  }
  const byHost = new Map(addressed.map((d) => [formatBdf(d.address), d]));
  const slots = layoutSlots(addressed).map((layout) =>
    layout.functions.map((f): PlugFunction => {
      const spec = byHost.get(formatBdf(f.host));
      const properties: Record<string, string> = { host: formatBdf(f.host) };
      if (spec?.iommufd !== undefined) properties.iommufd = spec.iommufd;
      return { id: f.id, driver: 'vfio-pci', properties, guestFunction: f.guestFunction, passFd: spec?.deviceFd };
    }),
  );
  return attachSlots(qmp, slots, options);
}

async function verify(qmp: QmpExecutor, placed: readonly { id: string; rootPort: string; function: number }[]): Promise<PlacedDevice[]> {
  const pci = await queryPci(qmp);
  const ports = new Map<string, PciDeviceInfo>();
  const walk = (devices: readonly PciDeviceInfo[]): void => {
    for (const d of devices) {
      if (d.qdevId) ports.set(d.qdevId, d);
      if (d.bridge) walk(d.bridge.devices);
    }
  };
  for (const bus of pci) walk(bus.devices);
  const result: PlacedDevice[] = [];
  for (const p of placed) {
    const path = `${PERIPHERAL}/${p.id}`;
    const realized = await qomGet(qmp, path, 'realized');
    const parent = await qomGet(qmp, path, 'parent_bus');
    const devfn = await qomGet(qmp, path, 'addr');
    const expectedBus = `${PERIPHERAL}/${p.rootPort}/${p.rootPort}`;
    if (realized !== true || parent !== expectedBus || devfn !== p.function) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `QEMU accepted ${p.id} but QOM shows realized=${String(realized)}, bus ${String(parent)}, devfn ${String(devfn)}; ` +
          `expected realized=true, bus ${expectedBus}, devfn ${p.function}`,
        placed.map((x) => x.id),
      );
    }
    const port = ports.get(p.rootPort);
    let guestVisible = false;
    if (port?.bridge && port.bridge.secondary !== 0) {
      const seen = port.bridge.devices.find((d) => d.qdevId === p.id);
      if (seen?.slot !== 0 || seen.function !== p.function) {
        throw new HotplugError(
          'HOTPLUG_NOT_VERIFIED',
          `query-pci does not show ${p.id} at 00.${p.function} behind ${p.rootPort} (bus ${port.bridge.secondary})`,
          placed.map((x) => x.id),
        );
      }
      guestVisible = true;
    }
    result.push({ ...p, guestVisible });
  }
  return result;
}

async function rollback(qmp: QmpExecutor, added: readonly string[], timeoutMs: number): Promise<string[]> {
  if (added.length === 0) return [];
  try {
    await detachDevices(qmp, added, { timeoutMs });
    return [];
  } catch (err) {
    if (err instanceof HotplugError) return [...err.remaining];
    return [...added];
  }
}

/** Known causes of a failed vfio-pci device_add, and what to do. */
function hintFor(desc: string): string {
  if (/no such host device/.test(desc)) return ' (the host has no PCI device at that address; check lspci -D)';
  if (/not viable/.test(desc)) return ' (bind every device of the IOMMU group to vfio-pci, or leave them unbound)';
  if (/\/dev\/vfio\/\d+.*(Permission denied|Operation not permitted)/.test(desc)) {
    return ' (QEMU may not open the group: check the owner of /dev/vfio/N and its locked-memory limit)';
  }
  if (/does not support hotplugging/.test(desc)) return ' (put the device behind a pcie-root-port; pcie.0 takes no hot-plug)';
  return '';
}

export interface DetachOptions {
  /** How long the guest has to release the devices. Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * Asks QEMU to unplug the devices and waits for DEVICE_DELETED for each.
 * Functions that share a slot leave together: pass them together.
 */
export async function detachDevices(qmp: QmpExecutor, ids: readonly string[], options: DetachOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const wanted = new Set(ids);
  // Per slot, unplug one device: a PCIe slot ejects as a whole, and a second
  // device_del while the first is pending fails as "guest is busy"
  // (pcie_cap_slot_unplug_request_cb()).
  const toDelete: string[] = [];
  const slots = new Map<string, { id: string; devfn: number }[]>();
  for (const id of ids) {
    const path = `${PERIPHERAL}/${id}`;
    let bus: string;
    let devfn: number;
    try {
      bus = String(await qomGet(qmp, path, 'parent_bus'));
      devfn = Number(await qomGet(qmp, path, 'addr'));
    } catch (err) {
      if (err instanceof QmpCommandError) {
        throw new HotplugError('HOTPLUG_INVALID_REQUEST', `the VM has no device with id ${id} (${err.desc})`);
      }
      throw err;
    }
    const key = `${bus}#${devfn >> 3}`;
    const list = slots.get(key) ?? [];
    list.push({ id, devfn });
    slots.set(key, list);
  }
  for (const [key, list] of slots) {
    const bus = key.slice(0, key.indexOf('#'));
    const slot = Number(key.slice(key.indexOf('#') + 1));
    const siblings: string[] = [];
    for (const link of (await qomList(qmp, bus)).filter((p) => /^child\[\d+\]$/.test(p.name))) {
      const path = String(await qomGet(qmp, bus, link.name));
      const devfn = Number(await qomGet(qmp, path, 'addr'));
      if (devfn >> 3 === slot) siblings.push(path.slice(path.lastIndexOf('/') + 1));
    }
    const left = siblings.filter((s) => !wanted.has(s));
    if (left.length > 0) {
      throw new HotplugError(
        'HOTPLUG_INVALID_REQUEST',
        `${list.map((d) => d.id).join(', ')} ${list.length > 1 ? 'share' : 'shares'} a slot with ${left.join(', ')}; a PCIe slot is ejected whole, so detach them together`,
      );
    }
    list.sort((a, b) => a.devfn - b.devfn);
    toDelete.push(list[0]!.id);
  }

  const deleted = new Set<string>();
  const waits = ids.map((id) => qmp.waitForEvent('DEVICE_DELETED', (e) => e.data.device === id, timeoutMs));
  const refusal = qmp.waitForEvent('DEVICE_UNPLUG_GUEST_ERROR', (e) => e.data.device !== undefined && wanted.has(e.data.device), timeoutMs);
  const cancelAll = (): void => {
    for (const w of waits) w.cancel();
    refusal.cancel();
  };
  const allDeleted = Promise.all(
    waits.map((w, i) =>
      w.promise.then(() => {
        deleted.add(ids[i]!);
      }),
    ),
  );
  try {
    for (const id of toDelete) {
      try {
        await deviceDel(qmp, id);
      } catch (err) {
        // A repeated request is still pending in QEMU: keep waiting for it.
        if (err instanceof QmpCommandError && /already in the process of unplug/.test(err.desc)) continue;
        throw err;
      }
    }
    const outcome = await Promise.race([
      allDeleted.then(() => 'deleted' as const),
      refusal.promise.then((e: QmpEventOf<'DEVICE_UNPLUG_GUEST_ERROR'>) => e),
    ]);
    if (outcome !== 'deleted') {
      throw new HotplugError(
        'UNPLUG_REJECTED_BY_GUEST',
        `the guest refused to release ${outcome.data.device} (DEVICE_UNPLUG_GUEST_ERROR); it may be in use by the guest OS: stop using it there and retry`,
        ids.filter((id) => !deleted.has(id)),
      );
    }
  } catch (err) {
    if (err instanceof HotplugError) throw err;
    if (err instanceof QmpTimeoutError && err.command.startsWith('event ')) {
      const remaining = ids.filter((id) => !deleted.has(id));
      throw new HotplugError('UNPLUG_NOT_ACKNOWLEDGED', await notAcknowledged(qmp, remaining, timeoutMs), remaining, { cause: err });
    }
    throw err;
  } finally {
    cancelAll();
  }
}

async function notAcknowledged(qmp: QmpExecutor, remaining: readonly string[], timeoutMs: number): Promise<string> {
  // A device can leave QOM before DEVICE_DELETED: QEMU sends the event from
  // device_finalize(), once the last reference is dropped. On a running TCG
  // pseries VM whose vCPU only spins in firmware that has not happened after
  // the DR connector released the device at once; stopping the VM completes it.
  const gone: string[] = [];
  for (const id of remaining) {
    try {
      await qomGet(qmp, `${PERIPHERAL}/${id}`, 'realized');
    } catch (err) {
      if (err instanceof QmpCommandError) gone.push(id);
      else throw err;
    }
  }
  // Which action completes a pending unplug is QEMU's behaviour, checked on
  // q35 with 7.2 and 10.0 (src/real-qemu-matrix.test.ts): a pending unplug
  // survives `stop` (the VM pauses with the slot still asking the guest),
  // and a machine reset completes it, since no guest is left to answer.
  const pending = remaining.filter((id) => !gone.includes(id));
  let state: string;
  try {
    const s = await queryStatus(qmp);
    state = s.running
      ? 'The VM is running, so the guest OS ignored the request: it has no PCI hot-plug support (Linux: pciehp on q35, ' +
        'rpaphp/drmgr on pseries), or the device is busy in the guest'
      : `The VM is not running (status ${s.status}), so no guest can answer`;
  } catch {
    state = 'The VM state could not be read';
  }
  const parts: string[] = [];
  if (pending.length > 0) {
    parts.push(
      `device_del of ${pending.join(', ')} was accepted, but the guest did not release ${pending.length > 1 ? 'them' : 'it'} ` +
        `within ${timeoutMs} ms: QEMU only asks the guest to eject the slot and removes the device once the guest ` +
        `powers it off (q35: pcie_cap_slot_unplug_request_cb(); pseries: the guest isolates the slot's DR connector ` +
        `through RTAS before spapr_drc_release()). ${state}. The device${pending.length > 1 ? 's stay' : ' stays'} attached ` +
        `with the request pending; let the guest finish it, or reset the VM (QMP system_reset; the guest OS restarts) ` +
        `to make QEMU complete the unplug (RESET, then DEVICE_DELETED); QMP stop does not release it.`,
    );
  }
  if (gone.length > 0) {
    parts.push(
      `${gone.join(', ')} ${gone.length > 1 ? 'have' : 'has'} left the VM's device tree, but QEMU sent no DEVICE_DELETED ` +
        `within ${timeoutMs} ms: it sends it only once the device is freed (device_finalize()), and until then the ` +
        `host device stays open. Stop the VM (QMP stop) to let QEMU finish, or wait longer.`,
    );
  }
  return parts.join(' ');
}

// ---------------------------------------------------------------------------
// pseries: a PE domain is its own spapr-pci-host-bridge, whose root bus
// `<id>.0` takes hot-plug directly into any of its 32 slots (each slot
// function has its own PCI DR connector, spapr_phb_realize()).

/** Slots on one sPAPR host bridge's root bus (PCI_SLOT_MAX). */
const PHB_SLOTS = 32;

export interface HostBridgeInfo {
  readonly id: string;
  /** The bridge's `index`: the guest PCI domain it becomes. */
  readonly index: number;
  /** Its root bus, as device_add's `bus` takes it. */
  readonly bus: string;
  /** Slots (0-31) that already hold a device, ascending. */
  readonly occupiedSlots: readonly number[];
}

/**
 * Every spapr-pci-host-bridge created with an id, with the slots in use on
 * its root bus. The machine's own bridge (index 0) has no id and is not
 * listed: vfiokit gives each PE domain a bridge of its own.
 */
export async function listHostBridges(qmp: QmpExecutor): Promise<HostBridgeInfo[]> {
  const bridges: HostBridgeInfo[] = [];
  for (const child of await qomList(qmp, PERIPHERAL)) {
    if (child.type !== 'child<spapr-pci-host-bridge>') continue;
    const path = `${PERIPHERAL}/${child.name}`;
    const index = Number(await qomGet(qmp, path, 'index'));
    // The root bus is named `<id>.0` (qbus_init_internal() for a bridge's first bus).
    const bus = `${child.name}.0`;
    const busPath = `${path}/${bus}`;
    const slots = new Set<number>();
    for (const link of (await qomList(qmp, busPath)).filter((p) => /^child\[\d+\]$/.test(p.name))) {
      const dev = String(await qomGet(qmp, busPath, link.name));
      slots.add(Number(await qomGet(qmp, dev, 'addr')) >> 3);
    }
    bridges.push({ id: child.name, index, bus, occupiedSlots: [...slots].sort((a, b) => a - b) });
  }
  return bridges.sort((a, b) => a.index - b.index);
}

export interface PlacedOnHostBridge {
  readonly id: string;
  readonly hostBridge: string;
  readonly slot: number;
  readonly function: number;
}

export interface HostBridgeAttachOptions {
  /** Id of the spapr-pci-host-bridge of the group's PE domain (`phbN` from buildCommandLine). */
  readonly hostBridge: string;
  /** How long to wait for devices removed again when attaching fails part-way. Default 5 s. */
  readonly rollbackTimeoutMs?: number;
  /** How long one device_add may take. Default 5 min (see AttachOptions.deviceAddTimeoutMs). */
  readonly deviceAddTimeoutMs?: number;
}

/**
 * Hot-plugs a group's vfio-pci devices into free slots of a pseries guest's
 * host bridge, lowest slots first, a host slot's functions kept together;
 * verifies through QOM and query-pci. Detach with detachDevices.
 */
export async function attachGroupToHostBridge(
  qmp: QmpExecutor,
  devices: readonly VfioDeviceSpec[],
  options: HostBridgeAttachOptions,
): Promise<PlacedOnHostBridge[]> {
  const addressed: (VfioDeviceSpec & { address: PciAddress })[] = [];
  for (const d of devices) {
    const address = parseBdf(d.host);
    if (!address) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `${JSON.stringify(d.host)} is not a PCI address like 0000:01:00.0`);
    addressed.push({ ...d, address });
  }
  const slots = layoutSlots(addressed).map((layout) =>
    layout.functions.map((f) => ({
      id: f.id,
      driver: 'vfio-pci',
      properties: { host: formatBdf(f.host) },
      guestFunction: f.guestFunction,
    })),
  );
  return attachSlotsToHostBridge(qmp, slots, options);
}

/**
 * Plugs each slot's functions into its own free slot of a pseries host
 * bridge, lowest first; returns where each went. On failure removes what it
 * added (as far as QEMU lets it) and reports what remains.
 */
export async function attachSlotsToHostBridge(
  qmp: QmpExecutor,
  slots: readonly (readonly PlugFunction[])[],
  options: HostBridgeAttachOptions,
): Promise<PlacedOnHostBridge[]> {
  await checkPlugRequest(qmp, slots);
  const bridges = await listHostBridges(qmp);
  const phb = bridges.find((b) => b.id === options.hostBridge);
  if (!phb) {
    throw new HotplugError(
      'HOTPLUG_INVALID_REQUEST',
      `the VM has no spapr-pci-host-bridge with id ${options.hostBridge}` +
        `${bridges.length ? ` (it has ${bridges.map((b) => b.id).join(', ')})` : ''}; ` +
        `start it with -device spapr-pci-host-bridge,index=N,id=${options.hostBridge} for the group's PE domain`,
    );
  }
  const free = [...Array(PHB_SLOTS).keys()].filter((s) => !phb.occupiedSlots.includes(s));
  if (free.length < slots.length) {
    throw new HotplugError(
      'HOTPLUG_NO_FREE_SLOT',
      `need ${slots.length} free slot(s) on host bridge ${phb.id}, found ${free.length} of ${PHB_SLOTS}; ` +
        `detach devices from ${phb.id} or give the PE domain another spapr-pci-host-bridge`,
    );
  }
  const added: string[] = [];
  const placed: PlacedOnHostBridge[] = [];
  let current: string | undefined;
  try {
    for (const [i, functions] of slots.entries()) {
      const slot = free[i]!;
      const multi = functions.length > 1;
      // Function 0 last: sPAPR signals the slot's hot-plug to the guest when
      // function 0 arrives and refuses other functions after it
      // (spapr_pci_pre_plug(), spapr_pci_plug()).
      const order = [...functions].sort(
        (a, b) => (a.guestFunction === 0 ? 1 : 0) - (b.guestFunction === 0 ? 1 : 0) || a.guestFunction - b.guestFunction,
      );
      for (const f of order) {
        const props: Record<string, string | number | boolean> = {
          ...f.properties,
          bus: phb.bus,
          addr: `0x${slot.toString(16)}.${f.guestFunction}`,
        };
        if (multi && f.guestFunction === 0) props.multifunction = true;
        current = f.id;
        await deviceAdd(qmp, f.driver, f.id, props, { timeoutMs: options.deviceAddTimeoutMs ?? 300_000 });
        added.push(f.id);
        placed.push({ id: f.id, hostBridge: phb.id, slot, function: f.guestFunction });
      }
    }
  } catch (err) {
    const remaining = await rollback(qmp, added, options.rollbackTimeoutMs ?? 5_000);
    const cause = err instanceof QmpCommandError ? `${err.desc}${hintFor(err.desc)}` : (err as Error).message;
    throw new HotplugError(
      'HOTPLUG_FAILED',
      `device_add of ${current ?? 'a device'} on ${phb.id} failed: ${cause}` +
        (remaining.length
          ? `; ${remaining.join(', ')}, added before it, could not be removed again: ${remaining.length > 1 ? 'they stay' : 'it stays'} ` +
            `in the VM until the guest releases ${remaining.length > 1 ? 'them' : 'it'} or QEMU exits`
          : added.length
            ? '; devices added before it were removed'
            : ''),
      remaining,
      { cause: err },
    );
  }
  await verifyOnHostBridge(qmp, placed);
  return placed;
}

async function verifyOnHostBridge(qmp: QmpExecutor, placed: readonly PlacedOnHostBridge[]): Promise<void> {
  // A host bridge's root bus is bus 0 of its own domain and needs no
  // firmware numbering, so query-pci shows its devices even in prelaunch.
  const seen = new Map<string, PciDeviceInfo>();
  for (const bus of await queryPci(qmp)) for (const d of bus.devices) if (d.qdevId) seen.set(d.qdevId, d);
  for (const p of placed) {
    const path = `${PERIPHERAL}/${p.id}`;
    const realized = await qomGet(qmp, path, 'realized');
    const parent = await qomGet(qmp, path, 'parent_bus');
    const devfn = await qomGet(qmp, path, 'addr');
    const expectedBus = `${PERIPHERAL}/${p.hostBridge}/${p.hostBridge}.0`;
    const expectedDevfn = (p.slot << 3) | p.function;
    if (realized !== true || parent !== expectedBus || devfn !== expectedDevfn) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `QEMU accepted ${p.id} but QOM shows realized=${String(realized)}, bus ${String(parent)}, devfn ${String(devfn)}; ` +
          `expected realized=true, bus ${expectedBus}, devfn ${expectedDevfn}`,
        placed.map((x) => x.id),
      );
    }
    const info = seen.get(p.id);
    if (!info || info.slot !== p.slot || info.function !== p.function) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `query-pci does not show ${p.id} at ${p.slot.toString(16).padStart(2, '0')}.${p.function} on ${p.hostBridge}`,
        placed.map((x) => x.id),
      );
    }
  }
}
