// How host functions become guest functions. Functions of one host device
// (same domain:bus:slot) stay together in one guest slot as a multifunction
// device, so a driver that looks for its sibling functions finds them.
export interface PciAddress {
  readonly domain: number;
  readonly bus: number;
  readonly slot: number;
  readonly function: number;
}

const BDF = /^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

/** Parses "0000:01:00.1" or "01:00.1"; null when the text is no PCI address. */
export function parseBdf(text: string): PciAddress | null {
  const m = BDF.exec(text);
  if (!m) return null;
  const slot = parseInt(m[3]!, 16);
  if (slot > 0x1f) return null;
  return { domain: m[1] ? parseInt(m[1], 16) : 0, bus: parseInt(m[2]!, 16), slot, function: parseInt(m[4]!, 10) };
}

export function formatBdf(a: PciAddress): string {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return `${h(a.domain, 4)}:${h(a.bus, 2)}:${h(a.slot, 2)}.${a.function}`;
}

/** One device to pass through, as the plan gives it. */
export interface VfioDeviceSpec {
  /** Host PCI address, [DDDD:]BB:DD.F. */
  readonly host: string;
  /** The host IOMMU group the device is in. */
  readonly group: number;
  /** The -device id; default `hostdev-DDDD-BB-DD-F`. */
  readonly id?: string;
  /** pseries only: the PE domain, i.e. which guest PCI host bridge the device sits on. */
  readonly peDomain?: number;
  /**
   * Hot-plug only: an open VFIO device fd (the cdev /dev/vfio/devices/vfioN)
   * to hand QEMU over the QMP socket (getfd, then vfio-pci fd=NAME; QEMU 9.0+,
   * hw/vfio/pci.c vfio_pci_set_fd), so QEMU opens nothing itself. The caller
   * keeps its copy and may close it once attach returned.
   */
  readonly deviceFd?: number;
  /** vfio-pci's iommufd=: the id of an `iommufd` object the device attaches to (QEMU 8.2+). */
  readonly iommufd?: string;
}

export interface PlacedFunction {
  readonly id: string;
  readonly host: PciAddress;
  readonly group: number;
  /** The function number the guest sees. */
  readonly guestFunction: number;
}

/** The functions of one host device, to occupy one guest slot. */
export interface SlotLayout {
  /** "DDDD:BB:DD" of the host device. */
  readonly hostSlot: string;
  /** Ordered by guest function. */
  readonly functions: readonly PlacedFunction[];
  readonly multifunction: boolean;
}

export function defaultDeviceId(a: PciAddress): string {
  return `hostdev-${formatBdf(a).replace(/[:.]/g, '-')}`;
}

/**
 * Groups devices by IOMMU group and host slot, in the order each first
 * appears: functions of one slot in different groups (SR-IOV VFs, say) get a
 * guest slot each, since a PCIe slot is hot-unplugged whole and a guest
 * groups the functions of a multi-function device behind a port without ACS
 * together, which would merge host groups in the guest. Guest
 * function numbers equal host ones when the host's function 0 is passed;
 * otherwise they are renumbered from 0 in host order, because a guest only
 * scans the other functions of a slot whose function 0 exists
 * (Linux pci_scan_slot(); QEMU refuses function 0 last on a hot-plug slot).
 * The caller has validated the addresses.
 */
export function layoutSlots(devices: readonly (VfioDeviceSpec & { readonly address: PciAddress })[]): SlotLayout[] {
  const bySlot = new Map<string, (VfioDeviceSpec & { readonly address: PciAddress })[]>();
  for (const d of devices) {
    const key = `${d.group}/${formatBdf(d.address).slice(0, -2)}`;
    const list = bySlot.get(key);
    if (list) list.push(d);
    else bySlot.set(key, [d]);
  }
  return [...bySlot].map(([key, list]) => {
    const hostSlot = key.slice(key.indexOf('/') + 1);
    const sorted = [...list].sort((a, b) => a.address.function - b.address.function);
    const keep = sorted[0]!.address.function === 0;
    const functions = sorted.map((d, i) => ({
      id: d.id ?? defaultDeviceId(d.address),
      host: d.address,
      group: d.group,
      guestFunction: keep ? d.address.function : i,
    }));
    return { hostSlot, functions, multifunction: functions.length > 1 };
  });
}

/** QEMU's option syntax doubles a comma inside a value (QemuOpts, keyval). */
export function optValue(value: string): string {
  return value.replace(/,/g, ',,');
}
