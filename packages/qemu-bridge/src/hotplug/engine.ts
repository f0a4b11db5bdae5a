// The one hot-plug engine: check a request, plug each slot's functions
// (function 0 last), pass a device fd when asked, take back what it added
// when a device_add fails, and check through QOM that QEMU put every device
// where it was sent. Where slots come from and how they are addressed is a
// Placement: root ports on q35 (root-ports.ts), a pseries guest's
// spapr-pci-host-bridge (host-bridges.ts).
import { formatBdf, layoutSlots, parseBdf, type PciAddress, type VfioDeviceSpec } from '../cmdline/layout';
import { deviceAdd, qomGet, qomList, queryPci, type DeviceProperties, type PciDeviceInfo } from '../commands/queries';
import { closefd, getfd } from '../commands/fds';
import { HotplugError, QmpCommandError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';
import { detachDevices } from './detach';
import { PERIPHERAL } from './peripheral';

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

/** A function as the engine plugged it: into which slot of the placement. */
export interface Plugged<S> {
  readonly id: string;
  readonly slot: S;
  readonly function: number;
}

/** Where a kind of machine takes hot-plugged slots, and how QEMU addresses them. */
export interface Placement<S> {
  /** Slots for `count` requested ones, in order; refuses with the reason when there are too few. */
  choose(qmp: QmpExecutor, count: number): Promise<readonly S[]>;
  /** device_add's `bus` and `addr` for function `fn` of `slot`. */
  address(slot: S, fn: number): { readonly bus: string; readonly addr: string };
  /** The QOM `parent_bus` and `addr` (devfn) a device plugged there shows. */
  expected(slot: S, fn: number): { readonly qomBus: string; readonly devfn: number };
  /** Where, for error text: '' or ` on <bridge>`. */
  where(slot: S | undefined): string;
}

export interface PlugOptions {
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
 * Plugs each requested slot's functions into its own slot of `placement`;
 * returns where each went. On failure removes what it added (as far as QEMU
 * lets it without a guest) and reports what remains.
 */
export async function plugSlots<S>(
  qmp: QmpExecutor,
  slots: readonly (readonly PlugFunction[])[],
  placement: Placement<S>,
  options: PlugOptions = {},
): Promise<Plugged<S>[]> {
  await checkPlugRequest(qmp, slots);
  const chosen = await placement.choose(qmp, slots.length);
  const added: string[] = [];
  const plugged: Plugged<S>[] = [];
  let current: { id: string; slot: S } | undefined;
  try {
    for (const [i, functions] of slots.entries()) {
      const slot = chosen[i]!;
      const multi = functions.length > 1;
      // Function 0 last: QEMU announces the slot to the guest when function 0
      // arrives, and only then (pcie_cap_slot_plug_cb()); sPAPR also refuses
      // other functions after it (spapr_pci_pre_plug(), spapr_pci_plug()).
      const order = [...functions].sort(
        (a, b) => (a.guestFunction === 0 ? 1 : 0) - (b.guestFunction === 0 ? 1 : 0) || a.guestFunction - b.guestFunction,
      );
      for (const f of order) {
        const props: Record<string, string | number | boolean> = { ...f.properties, ...placement.address(slot, f.guestFunction) };
        if (multi && f.guestFunction === 0) props.multifunction = true;
        current = { id: f.id, slot };
        await addWithFd(qmp, f, props, options.deviceAddTimeoutMs ?? 300_000);
        added.push(f.id);
        plugged.push({ id: f.id, slot, function: f.guestFunction });
      }
    }
  } catch (err) {
    const remaining = await rollback(qmp, added, options.rollbackTimeoutMs ?? 5_000);
    const cause = err instanceof QmpCommandError ? `${err.desc}${hintFor(err.desc)}` : (err as Error).message;
    throw new HotplugError(
      'HOTPLUG_FAILED',
      `device_add of ${current?.id ?? 'a device'}${placement.where(current?.slot)} failed: ${cause}` +
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
  await checkInQom(qmp, plugged, placement);
  return plugged;
}

async function addWithFd(qmp: QmpExecutor, f: PlugFunction, props: Record<string, string | number | boolean>, timeoutMs: number): Promise<void> {
  if (f.passFd === undefined) {
    await deviceAdd(qmp, f.driver, f.id, props, { timeoutMs });
    return;
  }
  const fdname = `vfiokit-fd-${f.id}`;
  await getfd(qmp, fdname, f.passFd);
  try {
    await deviceAdd(qmp, f.driver, f.id, { ...props, fd: fdname }, { timeoutMs });
  } catch (err) {
    // Realize took the fd out of the monitor's list if it got that far
    // (monitor_fd_param); otherwise it is still there: close it.
    await closefd(qmp, fdname).catch(() => {});
    throw err;
  }
}

/** QEMU accepted each device: QOM must show it realized on the bus and at the devfn it was sent to. */
async function checkInQom<S>(qmp: QmpExecutor, plugged: readonly Plugged<S>[], placement: Placement<S>): Promise<void> {
  for (const p of plugged) {
    const path = `${PERIPHERAL}/${p.id}`;
    const realized = await qomGet(qmp, path, 'realized');
    const parent = await qomGet(qmp, path, 'parent_bus');
    const devfn = await qomGet(qmp, path, 'addr');
    const want = placement.expected(p.slot, p.function);
    if (realized !== true || parent !== want.qomBus || devfn !== want.devfn) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `QEMU accepted ${p.id} but QOM shows realized=${String(realized)}, bus ${String(parent)}, devfn ${String(devfn)}; ` +
          `expected realized=true, bus ${want.qomBus}, devfn ${want.devfn}`,
        plugged.map((x) => x.id),
      );
    }
  }
}

/** query-pci's devices by qdev id, behind bridges too. */
export async function pciDevicesById(qmp: QmpExecutor): Promise<Map<string, PciDeviceInfo>> {
  const byId = new Map<string, PciDeviceInfo>();
  const walk = (devices: readonly PciDeviceInfo[]): void => {
    for (const d of devices) {
      if (d.qdevId) byId.set(d.qdevId, d);
      if (d.bridge) walk(d.bridge.devices);
    }
  };
  for (const bus of await queryPci(qmp)) walk(bus.devices);
  return byId;
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

/**
 * A group's host devices as vfio-pci functions, a host slot's functions kept
 * together in one guest slot (layoutSlots). Refuses an address that is not a
 * BDF and a device fd without an iommufd: QEMU refuses it at realize
 * (hw/vfio/pci.c: "Use FD passing only with iommufd backend"), since a device
 * fd is a VFIO cdev fd, which only an iommufd attaches; the legacy container
 * finds groups through sysfs.
 */
export function groupSlots(devices: readonly VfioDeviceSpec[]): PlugFunction[][] {
  const addressed: (VfioDeviceSpec & { address: PciAddress })[] = [];
  for (const d of devices) {
    const address = parseBdf(d.host);
    if (!address) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `${JSON.stringify(d.host)} is not a PCI address like 0000:01:00.0`);
    if (d.deviceFd !== undefined && d.iommufd === undefined) {
      throw new HotplugError(
        'HOTPLUG_INVALID_REQUEST',
        `${formatBdf(address)}: a device fd needs an iommufd object to attach to; give iommufd (the id of ` +
          `-object iommufd,id=ID) or drop deviceFd and let QEMU open the group itself`,
      );
    }
    addressed.push({ ...d, address });
  }
  const byHost = new Map(addressed.map((d) => [formatBdf(d.address), d]));
  return layoutSlots(addressed).map((layout) =>
    layout.functions.map((f): PlugFunction => {
      const spec = byHost.get(formatBdf(f.host));
      const properties: Record<string, string> = { host: formatBdf(f.host) };
      if (spec?.iommufd !== undefined) properties.iommufd = spec.iommufd;
      return { id: f.id, driver: 'vfio-pci', properties, guestFunction: f.guestFunction, ...(spec?.deviceFd === undefined ? {} : { passFd: spec.deviceFd }) };
    }),
  );
}
