// q35's placement: each slot is a free hot-pluggable PCIe root port (or
// downstream port), the device at 0.<function> on the port's secondary bus.
import type { VfioDeviceSpec } from '../cmdline/layout';
import { qomGet, qomList, qomListTypes } from '../commands/queries';
import { HotplugError, QmpCommandError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';
import { PERIPHERAL } from './peripheral';
import { groupSlots, pciDevicesById, plugSlots, type Placement, type PlugFunction, type PlugOptions } from './engine';

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

export interface AttachOptions extends PlugOptions {
  /** Ports to use, in order; default every free hot-pluggable port of the VM. */
  readonly rootPorts?: readonly string[];
}

/** The named ports, or every free hot-pluggable one, as slots. */
function rootPortPlacement(named: readonly string[] | undefined): Placement<string> {
  return {
    async choose(qmp, count) {
      const ports = await listRootPorts(qmp);
      const chosen = named
        ? named.map((id) => {
            const port = ports.find((p) => p.id === id);
            if (!port) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `the VM has no PCIe root port with id ${id}`);
            if (!port.hotplug) throw new HotplugError('HOTPLUG_INVALID_REQUEST', `root port ${id} was created with hotplug=off`);
            if (port.occupants.length > 0) {
              throw new HotplugError('HOTPLUG_INVALID_REQUEST', `root port ${id} is occupied by ${port.occupants.join(', ')}`);
            }
            return port;
          })
        : ports.filter((p) => p.hotplug && p.occupants.length === 0);
      if (chosen.length < count) {
        throw new HotplugError(
          'HOTPLUG_NO_FREE_SLOT',
          `need ${count} free hot-pluggable PCIe root port(s), found ${chosen.length}` +
            `${chosen.length ? ` (${chosen.map((p) => p.id).join(', ')})` : ''}; q35's pcie.0 takes no hot-plug, ` +
            `so start the VM with spare ports (-device pcie-root-port,id=rpN,chassis=N) or detach devices first`,
        );
      }
      return chosen.map((p) => p.id);
    },
    address: (port, fn) => ({ bus: port, addr: `0.${fn}` }),
    expected: (port, fn) => ({ qomBus: `${PERIPHERAL}/${port}/${port}`, devfn: fn }),
    where: () => '',
  };
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
  const plugged = await plugSlots(qmp, slots, rootPortPlacement(options.rootPorts), options);
  // Behind a port whose bus firmware has numbered, query-pci must show the
  // device where QOM does; before that the guest cannot see it yet.
  const pci = await pciDevicesById(qmp);
  return plugged.map((p) => {
    const port = pci.get(p.slot);
    if (!port?.bridge || port.bridge.secondary === 0) return { id: p.id, rootPort: p.slot, function: p.function, guestVisible: false };
    const seen = port.bridge.devices.find((d) => d.qdevId === p.id);
    if (seen?.slot !== 0 || seen.function !== p.function) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `query-pci does not show ${p.id} at 00.${p.function} behind ${p.slot} (bus ${port.bridge.secondary})`,
        plugged.map((x) => x.id),
      );
    }
    return { id: p.id, rootPort: p.slot, function: p.function, guestVisible: true };
  });
}

/** Hot-plugs a group's vfio-pci devices, one root port per host slot. */
export async function attachGroup(qmp: QmpExecutor, devices: readonly VfioDeviceSpec[], options: AttachOptions = {}): Promise<PlacedDevice[]> {
  return attachSlots(qmp, groupSlots(devices), options);
}
