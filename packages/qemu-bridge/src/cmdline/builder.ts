// Turns a VmDescription into QEMU's argv. The input is this package's own
// plain type: the planner converts core's plan into it. The output is an argv
// array, never a shell string; `readable` is for people only.
import { VmDescriptionError } from '../errors';
import type { QemuRequirements } from '../commands/probe';
import { DeviceType } from '../commands/probe';
import { isIP } from 'node:net';
import type { QmpAddress } from '../qmp/transport';

/** The chardev of a QMP monitor on an IPv6 address. */
const QMP_CHARDEV = 'vfiokit-qmp';
import { defaultDeviceId, formatBdf, layoutSlots, optValue, parseBdf, type PciAddress, type VfioDeviceSpec } from './layout';

export type MachineKind = 'q35' | 'pseries';
export type GuestIommu = 'none' | 'intel-iommu' | 'virtio-iommu';

export interface VmDescription {
  /** Shown by QEMU in window titles and process names. */
  readonly name?: string;
  readonly machine: MachineKind;
  readonly memoryMiB: number;
  readonly cpus: number;
  /** q35 only; a pseries guest always has its sPAPR TCE IOMMU, so it takes 'none'. */
  readonly guestIommu: GuestIommu;
  readonly devices: readonly VfioDeviceSpec[];
  /** Default 'kvm'. */
  readonly accel?: 'kvm' | 'tcg';
  /** Where QEMU's QMP monitor should listen. */
  readonly qmp?: QmpAddress;
  /** q35: empty hot-pluggable root ports to leave for later hot-plug. Default 0. */
  readonly spareRootPorts?: number;
  /** Default qemu-system-x86_64 (q35) or qemu-system-ppc64 (pseries). */
  readonly binary?: string;
  /** Appended as given (disks, network, display). Slots 0x1-0x1e of pcie.0 are this builder's. */
  readonly extraArgs?: readonly string[];
  /**
   * q35: pass the devices through iommufd instead of a type1 container:
   * `-object iommufd,id=ID` (default `iommufd0`) and `vfio-pci,...,iommufd=ID`
   * (QEMU 8.2+). QEMU opens /dev/iommu and each device's cdev itself; the
   * host kernel needs CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV.
   */
  readonly iommufd?: { readonly id?: string };
  /**
   * Start the guest so that a newer QEMU can take it over with cpr-transfer
   * (`vfiokit upgrade`, QEMU 10.1+ with VFIO devices): guest RAM in a memfd
   * shared with the new process (`memory-backend-memfd,share=on` as the
   * machine's memory-backend) and every other RAM block (ROMs, video memory)
   * shared too (`aux-ram-share=on`, QEMU 10.0+). Without them QEMU adds a
   * cpr-transfer blocker for each private RAM block (system/physmem.c
   * ram_block_add: "Memory region ... is not compatible with CPR").
   */
  readonly cpr?: boolean;
}

/** The id of the guest RAM backend a cpr-ready command line creates. */
export const CPR_RAM_ID = 'vfiokit-ram';

/** Where a passed-through function ended up in the guest. */
export interface DevicePlacement {
  readonly id: string;
  readonly host: string;
  readonly group: number;
  /** The bus the device is on: a root port id (q35) or `phbN.0` (pseries). */
  readonly bus: string;
  readonly slot: number;
  readonly function: number;
  /** pseries: the guest PCI domain of the device's host bridge. */
  readonly guestDomain?: number;
}

export interface QemuCommandLine {
  /** argv[0] is the binary. */
  readonly argv: readonly string[];
  /** One option per line, shell-quoted: for logs and people, not for a shell. */
  readonly readable: string;
  readonly placements: readonly DevicePlacement[];
  /** Root port ids left empty for hot-plug (q35). */
  readonly spareRootPorts: readonly string[];
}

/** pcie.0 slots this builder fills: virtio-iommu at 0x1, root ports from 0x2. */
const VIRTIO_IOMMU_SLOT = 0x1;
const FIRST_ROOT_PORT_SLOT = 0x2;
/** 0x1f holds the ICH9 functions q35 always creates. */
const LAST_ROOT_PORT_SLOT = 0x1e;
const PHB_SLOTS = 32;

export function buildCommandLine(vm: VmDescription): QemuCommandLine {
  const devices = validate(vm);
  const argv: string[] = [vm.binary ?? (vm.machine === 'q35' ? 'qemu-system-x86_64' : 'qemu-system-ppc64')];
  const add = (...args: string[]): void => {
    argv.push(...args);
  };
  if (vm.name !== undefined) add('-name', `guest=${optValue(vm.name)}`);
  // kernel-irqchip=split: intel-iommu's interrupt remapping cannot work with
  // the in-kernel IOAPIC (vtd_decide_config(): "Intel Interrupt Remapping
  // cannot work with kernel-irqchip=on, please use 'split|off'").
  const machine = vm.machine === 'q35' && vm.guestIommu === 'intel-iommu' ? 'q35,kernel-irqchip=split' : vm.machine;
  add('-machine', vm.cpr ? `${machine},memory-backend=${CPR_RAM_ID},aux-ram-share=on` : machine);
  add('-accel', vm.accel ?? 'kvm');
  add('-m', `${vm.memoryMiB}M`);
  if (vm.cpr) add('-object', `memory-backend-memfd,id=${CPR_RAM_ID},size=${vm.memoryMiB}M,share=on`);
  add('-smp', String(vm.cpus));
  // Like libvirt: no default NIC/VGA/serial that would take pcie.0 slots by
  // automatic addressing before the explicit addresses below are placed.
  add('-nodefaults');
  if (vm.qmp) {
    if (!('path' in vm.qmp) && isIP(vm.qmp.host) === 6) {
      // -qmp's legacy tcp: form cannot name an IPv6 host: qemu_chr_parse_compat()
      // (chardev/char.c) reads the host with "%64[^:]", so "[::1]" or "::1"
      // is cut at its first colon and refused. The socket chardev takes
      // host= as given.
      add('-chardev', `socket,id=${QMP_CHARDEV},host=${vm.qmp.host},port=${vm.qmp.port},server=on,wait=off`);
      add('-mon', `chardev=${QMP_CHARDEV},mode=control`);
    } else {
      const where = 'path' in vm.qmp ? `unix:${optValue(vm.qmp.path)}` : `tcp:${vm.qmp.host}:${vm.qmp.port}`;
      add('-qmp', `${where},server=on,wait=off`);
    }
  }
  const iommufdId = vm.iommufd === undefined ? undefined : (vm.iommufd.id ?? 'iommufd0');
  if (iommufdId !== undefined && vm.machine !== 'q35') {
    // QEMU's sPAPR TCE support needs the legacy container (hw/vfio/spapr.c).
    throw new VmDescriptionError(`iommufd passthrough is for q35 guests; a ${vm.machine} guest uses the VFIO container`);
  }
  const slots = layoutSlots(devices);
  const placements: DevicePlacement[] = [];
  const spare: string[] = [];
  if (vm.machine === 'q35') {
    // The vIOMMU must exist before any device it translates for: a PCI
    // device takes its DMA address space at realize time
    // (pci_device_iommu_address_space()), in command-line order.
    if (vm.guestIommu === 'intel-iommu') {
      // caching-mode=on makes the guest report every new mapping (VT-d 6.1),
      // which is how QEMU learns what to map for VFIO; vfio refuses a vIOMMU
      // without it (vtd_iommu_notify_flag_changed()).
      add('-device', `intel-iommu,intremap=on,caching-mode=on${vm.cpus > 255 ? ',eim=on' : ''}`);
    } else if (vm.guestIommu === 'virtio-iommu') {
      add('-device', `virtio-iommu-pci,bus=pcie.0,addr=${hex(VIRTIO_IOMMU_SLOT)}`);
    }
    // backends/iommufd.c: the object opens /dev/iommu; each vfio-pci with
    // iommufd= binds its cdev to it (hw/vfio/iommufd.c) instead of joining
    // a container through its group.
    if (iommufdId !== undefined) add('-object', `iommufd,id=${optValue(iommufdId)}`);
    const ports = slots.length + (vm.spareRootPorts ?? 0);
    const maxPorts = (LAST_ROOT_PORT_SLOT - FIRST_ROOT_PORT_SLOT + 1) * 8;
    if (ports > maxPorts) {
      throw new VmDescriptionError(
        `VM needs ${ports} pcie-root-ports (${slots.length} devices + ${vm.spareRootPorts ?? 0} spare), ` +
          `but pcie.0 has room for ${maxPorts}; pass fewer devices or spare ports`,
      );
    }
    for (let i = 0; i < ports; i++) {
      // Root ports are packed 8 to a pcie.0 slot, as libvirt does.
      const slot = FIRST_ROOT_PORT_SLOT + Math.floor(i / 8);
      const fn = i % 8;
      const multi = fn === 0 && i + 1 < ports ? ',multifunction=on' : '';
      add('-device', `pcie-root-port,id=rp${i},chassis=${i + 1},bus=pcie.0,addr=${hex(slot)}.${fn}${multi}`);
      if (i >= slots.length) spare.push(`rp${i}`);
    }
    slots.forEach((layout, i) => {
      for (const f of layout.functions) {
        // Function 0 carries multifunction=on for the whole slot; the guest
        // reads it from function 0's header type.
        const multi = layout.multifunction && f.guestFunction === 0 ? ',multifunction=on' : '';
        const via = iommufdId === undefined ? '' : `,iommufd=${optValue(iommufdId)}`;
        add('-device', `vfio-pci,host=${formatBdf(f.host)},id=${optValue(f.id)},bus=rp${i},addr=0x0.${f.guestFunction}${multi}${via}`);
        placements.push({ id: f.id, host: formatBdf(f.host), group: f.group, bus: `rp${i}`, slot: 0, function: f.guestFunction });
      }
    });
  } else {
    // sPAPR: one guest PCI host bridge per PE domain. Each bridge is one
    // partitionable endpoint with its own TCE table, so a guest domain maps
    // to exactly one host PE (hw/ppc/spapr_pci.c). Index 0 is the machine's
    // default bridge; ours start at 1 and become guest domains 0001, ...
    const domains = [...new Set(devices.map((d) => d.peDomain!))].sort((a, b) => a - b);
    const indexOf = new Map(domains.map((d, i) => [d, i + 1]));
    for (const [, index] of indexOf) add('-device', `spapr-pci-host-bridge,index=${index},id=phb${index}`);
    const nextSlot = new Map<number, number>();
    for (const layout of slots) {
      const domain = devices.find((d) => formatBdf(d.address) === formatBdf(layout.functions[0]!.host))!.peDomain!;
      const index = indexOf.get(domain)!;
      const slot = nextSlot.get(index) ?? 0;
      if (slot >= PHB_SLOTS) {
        throw new VmDescriptionError(`PE domain ${domain} has more than ${PHB_SLOTS} devices; one host bridge has ${PHB_SLOTS} slots`);
      }
      nextSlot.set(index, slot + 1);
      for (const f of layout.functions) {
        const multi = layout.multifunction && f.guestFunction === 0 ? ',multifunction=on' : '';
        add('-device', `vfio-pci,host=${formatBdf(f.host)},id=${optValue(f.id)},bus=phb${index}.0,addr=${hex(slot)}.${f.guestFunction}${multi}`);
        placements.push({
          id: f.id,
          host: formatBdf(f.host),
          group: f.group,
          bus: `phb${index}.0`,
          slot,
          function: f.guestFunction,
          guestDomain: index,
        });
      }
    }
  }
  if (vm.extraArgs) add(...vm.extraArgs);
  return { argv, readable: formatArgv(argv), placements, spareRootPorts: spare };
}

/** The devices and properties the command line uses, for requireCapabilities(). */
export function requirementsFor(vm: VmDescription): QemuRequirements {
  const types: string[] = [];
  if (vm.devices.length > 0) types.push(DeviceType.vfioPci);
  if (vm.machine === 'q35' && (vm.devices.length > 0 || (vm.spareRootPorts ?? 0) > 0)) types.push(DeviceType.pcieRootPort);
  if (vm.guestIommu === 'intel-iommu') types.push(DeviceType.intelIommu);
  if (vm.guestIommu === 'virtio-iommu') types.push(DeviceType.virtioIommu);
  if (vm.machine === 'pseries' && vm.devices.length > 0) types.push(DeviceType.spaprPciHostBridge);
  const deviceProperties: Record<string, string[]> = {};
  if (vm.guestIommu === 'intel-iommu') deviceProperties[DeviceType.intelIommu] = ['intremap', 'caching-mode'];
  if (vm.machine === 'pseries' && vm.devices.length > 0) deviceProperties[DeviceType.spaprPciHostBridge] = ['index'];
  return {
    deviceTypes: types,
    vfioPciProperties: vm.devices.length > 0 ? ['host', 'multifunction', 'addr', ...(vm.iommufd ? ['iommufd'] : [])] : [],
    deviceProperties,
  };
}

/** One option per line with its value, each word shell-quoted when needed. */
export function formatArgv(argv: readonly string[]): string {
  const lines: string[] = [quote(argv[0]!)];
  for (let i = 1; i < argv.length; i++) {
    const word = argv[i]!;
    const next = argv[i + 1];
    if (word.startsWith('-') && next !== undefined && !next.startsWith('-')) {
      lines.push(`${quote(word)} ${quote(next)}`);
      i++;
    } else {
      lines.push(quote(word));
    }
  }
  return lines.join(' \\\n    ');
}

function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

type AddressedDevice = VfioDeviceSpec & { readonly address: PciAddress };

function validate(vm: VmDescription): AddressedDevice[] {
  const problems: string[] = [];
  if (vm.machine !== 'q35' && vm.machine !== 'pseries') problems.push(`machine ${JSON.stringify(vm.machine)} is not q35 or pseries`);
  if (!Number.isInteger(vm.memoryMiB) || vm.memoryMiB <= 0) problems.push(`memoryMiB ${vm.memoryMiB} is not a positive integer`);
  if (!Number.isInteger(vm.cpus) || vm.cpus <= 0) problems.push(`cpus ${vm.cpus} is not a positive integer`);
  if (!['none', 'intel-iommu', 'virtio-iommu'].includes(vm.guestIommu)) {
    problems.push(`guestIommu ${JSON.stringify(vm.guestIommu)} is not none, intel-iommu or virtio-iommu`);
  }
  if (vm.machine === 'pseries' && vm.guestIommu !== 'none') {
    problems.push(`a pseries guest always has its sPAPR TCE IOMMU: give guestIommu 'none', not '${vm.guestIommu}'`);
  }
  const spare = vm.spareRootPorts ?? 0;
  if (!Number.isInteger(spare) || spare < 0) problems.push(`spareRootPorts ${spare} is not a non-negative integer`);
  if (vm.machine === 'pseries' && spare > 0) problems.push('spareRootPorts is for q35; pseries has no pcie-root-port');
  const seenHost = new Set<string>();
  const seenId = new Set<string>();
  const groupDomain = new Map<number, number>();
  const out: AddressedDevice[] = [];
  for (const d of vm.devices) {
    const address = parseBdf(d.host);
    if (!address) {
      problems.push(`device host ${JSON.stringify(d.host)} is not a PCI address like 0000:01:00.0`);
      continue;
    }
    const bdf = formatBdf(address);
    if (seenHost.has(bdf)) problems.push(`device ${bdf} is listed twice`);
    seenHost.add(bdf);
    if (d.id !== undefined && !/^[A-Za-z][A-Za-z0-9._-]*$/.test(d.id)) {
      problems.push(`device id ${JSON.stringify(d.id)} of ${bdf} is not a QEMU id (a letter, then letters, digits, '-', '.', '_')`);
    }
    const id = d.id ?? defaultDeviceId(address);
    if (seenId.has(id)) problems.push(`device id ${id} is used twice`);
    seenId.add(id);
    if (!Number.isInteger(d.group) || d.group < 0) problems.push(`device ${bdf} has group ${d.group}, not an IOMMU group number`);
    if (vm.machine === 'pseries') {
      if (d.peDomain === undefined || !Number.isInteger(d.peDomain) || d.peDomain < 0) {
        problems.push(`device ${bdf} has no peDomain; a pseries guest puts each PE domain on its own host bridge`);
      } else {
        const prev = groupDomain.get(d.group);
        if (prev !== undefined && prev !== d.peDomain) {
          problems.push(`group ${d.group} spans PE domains ${prev} and ${d.peDomain}; an IOMMU group is one PE and needs one domain`);
        }
        groupDomain.set(d.group, d.peDomain);
      }
    } else if (d.peDomain !== undefined) {
      problems.push(`device ${bdf} has a peDomain, which only pseries uses`);
    }
    out.push({ ...d, address });
  }
  if (vm.machine === 'pseries') {
    // Functions of one host device in one group share a guest slot, hence a
    // bridge (layoutSlots() keys slots by group and host slot).
    const slotDomain = new Map<string, number | undefined>();
    for (const d of out) {
      const key = `${d.group}/${formatBdf(d.address).slice(0, -2)}`;
      if (slotDomain.has(key) && slotDomain.get(key) !== d.peDomain) {
        problems.push(`functions of ${key} are given different PE domains; a device's functions share one`);
      }
      slotDomain.set(key, d.peDomain);
    }
  }
  if (problems.length > 0) {
    throw new VmDescriptionError(`cannot build a QEMU command line${vm.name ? ` for ${vm.name}` : ''}: ${problems.join('; ')}`);
  }
  return out;
}
