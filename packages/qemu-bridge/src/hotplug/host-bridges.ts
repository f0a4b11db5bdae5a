// pseries' placement: a PE domain is its own spapr-pci-host-bridge, whose
// root bus `<id>.0` takes hot-plug directly into any of its 32 slots (each
// slot function has its own PCI DR connector, spapr_phb_realize()).
import type { VfioDeviceSpec } from '../cmdline/layout';
import { qomGet, qomList } from '../commands/queries';
import { HotplugError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';
import { PERIPHERAL } from './peripheral';
import { groupSlots, pciDevicesById, plugSlots, type Placement, type PlugFunction, type PlugOptions } from './engine';

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

export interface HostBridgeAttachOptions extends PlugOptions {
  /** Id of the spapr-pci-host-bridge of the group's PE domain (`phbN` from buildCommandLine). */
  readonly hostBridge: string;
}

/** The free slots of one host bridge, lowest first. */
function hostBridgePlacement(id: string): Placement<{ readonly phb: HostBridgeInfo; readonly slot: number }> {
  return {
    async choose(qmp, count) {
      const bridges = await listHostBridges(qmp);
      const phb = bridges.find((b) => b.id === id);
      if (!phb) {
        throw new HotplugError(
          'HOTPLUG_INVALID_REQUEST',
          `the VM has no spapr-pci-host-bridge with id ${id}` +
            `${bridges.length ? ` (it has ${bridges.map((b) => b.id).join(', ')})` : ''}; ` +
            `start it with -device spapr-pci-host-bridge,index=N,id=${id} for the group's PE domain`,
        );
      }
      const free = [...Array(PHB_SLOTS).keys()].filter((s) => !phb.occupiedSlots.includes(s));
      if (free.length < count) {
        throw new HotplugError(
          'HOTPLUG_NO_FREE_SLOT',
          `need ${count} free slot(s) on host bridge ${phb.id}, found ${free.length} of ${PHB_SLOTS}; ` +
            `detach devices from ${phb.id} or give the PE domain another spapr-pci-host-bridge`,
        );
      }
      return free.map((slot) => ({ phb, slot }));
    },
    address: ({ phb, slot }, fn) => ({ bus: phb.bus, addr: `0x${slot.toString(16)}.${fn}` }),
    expected: ({ phb, slot }, fn) => ({ qomBus: `${PERIPHERAL}/${phb.id}/${phb.bus}`, devfn: (slot << 3) | fn }),
    where: (s) => (s ? ` on ${s.phb.id}` : ''),
  };
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
  const plugged = await plugSlots(qmp, slots, hostBridgePlacement(options.hostBridge), options);
  // A host bridge's root bus is bus 0 of its own domain and needs no
  // firmware numbering, so query-pci shows its devices even in prelaunch.
  const pci = await pciDevicesById(qmp);
  return plugged.map((p) => {
    const info = pci.get(p.id);
    if (!info || info.slot !== p.slot.slot || info.function !== p.function) {
      throw new HotplugError(
        'HOTPLUG_NOT_VERIFIED',
        `query-pci does not show ${p.id} at ${p.slot.slot.toString(16).padStart(2, '0')}.${p.function} on ${p.slot.phb.id}`,
        plugged.map((x) => x.id),
      );
    }
    return { id: p.id, hostBridge: p.slot.phb.id, slot: p.slot.slot, function: p.function };
  });
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
  return attachSlotsToHostBridge(qmp, groupSlots(devices), options);
}
