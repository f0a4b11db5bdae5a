// Where assigned functions appear in the guest's PCI topology.
//
// q35: every host slot (domain:bus:device) gets a pcie-root-port of its own,
// with its functions side by side behind it, as libvirt does: a root port is
// the only place a PCIe device can be hot-plugged, and keeping a slot's
// functions together keeps a multi-function device (GPU + its audio) whole in
// the guest, which drivers expect.
//
// pseries: every host PE (on POWER an IOMMU group is a PE) gets a guest PCI
// host bridge of its own, numbered by the DMA policy's planSpaprBridges (its
// LIOBNs must match), so each PE keeps its own TCE tables and container.
import { planSpaprBridges, type DmaGroup, type SpaprPciTopology, type SpaprPhb } from '../dma/index';

/** One host function as the guest sees it. */
export interface GuestFunction {
  readonly hostAddress: string;
  /** Guest PCI function number (0-7). */
  readonly guestFunction: number;
}

/** One guest slot: the functions of one host slot, kept together. */
export interface GuestSlot {
  /** Host slot, `0000:01:00`. */
  readonly hostSlot: string;
  /** Guest device number on its bus. */
  readonly guestDevice: number;
  readonly functions: readonly GuestFunction[];
  /** True when more than one function shares the slot (QEMU's `multifunction=on` on function 0). */
  readonly multifunction: boolean;
}

/** A q35 guest's pcie-root-port holding one host slot. */
export interface RootPortDomain {
  readonly kind: 'pcie-root-port';
  /** QEMU device id (`rp0`, `rp1`...): the bus the vfio-pci devices plug into; qemu-bridge's command line uses the same ids. */
  readonly id: string;
  /** PCIe chassis number, unique per port (QEMU refuses two ports with the same chassis and slot). */
  readonly chassis: number;
  readonly group: number;
  /** A root port has one device slot (0) below it. */
  readonly devices: readonly GuestSlot[];
}

/** A pseries guest PHB holding one host PE: dma's bridge (index, id, LIOBNs) with the PE's functions placed on it. */
export interface SpaprPhbDomain {
  readonly kind: 'spapr-pci-host-bridge';
  readonly bridge: SpaprPhb;
  /** Every guest PHB hangs off the pseries machine (dma's SpaprPciTopology.parent). */
  readonly parent: SpaprPciTopology['parent'];
  readonly group: number;
  readonly devices: readonly GuestSlot[];
}

export type GuestPciDomain = RootPortDomain | SpaprPhbDomain;

/** The endpoint functions of one IOMMU group to place, in address order. */
export interface GroupToPlace {
  readonly group: number;
  readonly functions: readonly string[];
}

function hostSlotOf(address: string): string {
  return address.slice(0, address.lastIndexOf('.'));
}

function functionOf(address: string): number {
  return Number(address.slice(address.lastIndexOf('.') + 1));
}

/**
 * The guest slots for a group's functions: one per host slot. Host function
 * numbers are kept when function 0 is among them; otherwise (a lone VF at
 * function 3, say) they are renumbered from 0, because a guest only scans the
 * other functions of a slot whose function 0 exists (the PCI spec's rule, as
 * Linux's pci_scan_slot follows it).
 */
export function slotsOf(functions: readonly string[], firstGuestDevice: number): GuestSlot[] {
  const bySlot = new Map<string, string[]>();
  for (const address of [...functions].sort()) {
    const slot = hostSlotOf(address);
    const list = bySlot.get(slot);
    if (list) list.push(address);
    else bySlot.set(slot, [address]);
  }
  let guestDevice = firstGuestDevice;
  return [...bySlot].map(([hostSlot, addresses]) => {
    const keep = addresses.some((a) => functionOf(a) === 0);
    return {
      hostSlot,
      guestDevice: guestDevice++,
      functions: addresses.map((hostAddress, i) => ({ hostAddress, guestFunction: keep ? functionOf(hostAddress) : i })),
      multifunction: addresses.length > 1,
    };
  });
}

/** q35: one root port per host slot, `rpN` with chassis N+1, in the order qemu-bridge's command line creates them. */
export function q35Domains(groups: readonly GroupToPlace[]): RootPortDomain[] {
  const domains: RootPortDomain[] = [];
  for (const g of groups) {
    for (const slot of slotsOf(g.functions, 0)) {
      const n = domains.length;
      // Below a root port the only device number is 0.
      domains.push({ kind: 'pcie-root-port', id: `rp${n}`, chassis: n + 1, group: g.group, devices: [{ ...slot, guestDevice: 0 }] });
    }
  }
  return domains;
}

/**
 * pseries: one guest PHB per PE, as dma's planSpaprBridges numbers them (the
 * DMA policy needs the same LIOBNs), slots numbered from 0 inside each.
 */
export function pseriesDomains(groups: readonly (GroupToPlace & { readonly reservedRegions: DmaGroup['reservedRegions'] })[]): SpaprPhbDomain[] {
  const topology = planSpaprBridges(groups.map((g) => ({ id: g.group, reservedRegions: g.reservedRegions })));
  return topology.bridges.map((bridge) => ({
    kind: 'spapr-pci-host-bridge',
    bridge,
    parent: topology.parent,
    group: bridge.group,
    devices: slotsOf(groups.find((g) => g.group === bridge.group)!.functions, 0),
  }));
}
