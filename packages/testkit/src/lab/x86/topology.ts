// The x86 lab guest's PCI topology: every named topology of the lab side by
// side in one q35 machine, so one boot covers them all. Addresses are fixed on
// the command line so BDFs are stable; bus numbers follow from SeaBIOS
// enumerating pcie.0's slots in order (00:04.0's secondary bus is 01, ...).
// The grouping each device gets is the one the emulated VT-d gives it when
// alone (the lab README's "What the VT-d host measured"): placing them
// together changes no group.

/** One device of the guest as lab cases see it. Also written to the guest as JSON. */
export interface LabDevice {
  /** Stable name used by cases: `solo`, `bridge-a`, ... */
  readonly role: string;
  readonly bdf: string;
  /** QEMU device model (`edu`, `virtio-rng-pci`). */
  readonly model: string;
  /** The driver the guest's init leaves it bound to, or null for none. */
  readonly driver: 'vfio-pci' | 'virtio-pci' | null;
  /** Roles of the devices that must share its IOMMU group (itself included). */
  readonly groupWith: readonly string[];
  /** Bridges and ports that are in the same IOMMU group as the device. */
  readonly groupBridges: readonly string[];
  /**
   * The guest kernel's reset methods for it (sysfs `reset_method`), probed
   * when the device was added; absent when it offers none (the attribute
   * is then hidden).
   */
  readonly resetMethods?: readonly string[];
  /**
   * Whether one of them still works when vfio-pci opens it: VFIO reports
   * VFIO_DEVICE_FLAGS_RESET (vdev->reset_works, set in vfio_pci_core_enable
   * from pci_try_reset_function) and DEVICE_RESET succeeds. `bus` goes
   * stale once another device joins the bus (pci_parent_bus_reset takes
   * only a device alone on its bus), so a listed method is not enough.
   */
  readonly resetWorks?: boolean;
}

export interface LabTopology {
  readonly name: string;
  readonly devices: readonly LabDevice[];
  /** `vfio_iommu_type1`'s `dma_entry_limit` in this guest (x86: the kernel's default, no parameter given). */
  readonly dmaEntryLimit: number;
  /**
   * The driver the guest kernel binds to each pcie-pci-bridge: none on x86
   * (ACPI keeps SHPC hot-plug with the firmware), `shpchp` on arm64 with a
   * device tree (SHPC is native there), which does DMA-API work and so
   * makes the bridge's group not viable.
   */
  readonly bridgeDriver?: string;
}

export const X86_TOPOLOGY: LabTopology = {
  name: 'x86-q35-edu',
  // The kernel's own default (vfio_iommu_type1.c: `dma_entry_limit =
  // U16_MAX`): the guest loads the module without the parameter, so the
  // entry-limit case meets the limit users meet; the mock is configured to
  // the same value.
  dmaEntryLimit: 65535,
  devices: [
    { role: 'solo', bdf: '0000:00:03.0', model: 'edu', driver: 'vfio-pci', groupWith: ['solo'], groupBridges: [] },
    {
      role: 'bridge-a',
      bdf: '0000:01:01.0',
      model: 'edu',
      driver: 'vfio-pci',
      groupWith: ['bridge-a', 'bridge-b'],
      groupBridges: ['0000:00:04.0'],
      // Probed while it was alone on bus 01, before bridge-b was added
      // (pci_init_reset_methods from pci_device_add): stale, VFIO finds no
      // reset at open. So for mf-0 and blocked, each first on its bus.
      resetMethods: ['bus'],
    },
    {
      role: 'bridge-b',
      bdf: '0000:01:02.0',
      model: 'edu',
      // Left unbound on purpose: a group with a device that vfio-pci does not
      // drive (viability, device fd of an unbound device, managed bind cases).
      driver: null,
      groupWith: ['bridge-a', 'bridge-b'],
      groupBridges: ['0000:00:04.0'],
    },
    { role: 'mf-0', bdf: '0000:02:00.0', model: 'edu', driver: 'vfio-pci', groupWith: ['mf-0', 'mf-1'], groupBridges: [], resetMethods: ['bus'] },
    { role: 'mf-1', bdf: '0000:02:00.1', model: 'edu', driver: 'vfio-pci', groupWith: ['mf-0', 'mf-1'], groupBridges: [] },
    {
      role: 'blocked',
      bdf: '0000:03:01.0',
      model: 'edu',
      driver: 'vfio-pci',
      groupWith: ['blocked', 'blocked-peer'],
      groupBridges: ['0000:00:06.0'],
      resetMethods: ['bus'],
    },
    {
      role: 'blocked-peer',
      bdf: '0000:03:02.0',
      model: 'virtio-rng-pci',
      // A kernel driver that uses the DMA API holds the group's DMA
      // ownership, so the group of `blocked` is not viable
      // (iommu_group_claim_dma_owner fails with EPERM).
      driver: 'virtio-pci',
      groupWith: ['blocked', 'blocked-peer'],
      groupBridges: ['0000:00:06.0'],
    },
    {
      // The one edu the kernel can reset: edu has no FLR and no PM
      // capability (hw/misc/edu.c adds only MSI), so a function reset is
      // left to the bus, and pci_parent_bus_reset (drivers/pci/pci.c) takes
      // a device only when it is alone on a bus below a bridge, as here
      // behind its own root port (00:07.0; SeaBIOS numbers its secondary
      // bus 04 after the three bridges before it). QEMU's
      // vfio_pci_compute_needs_reset then leaves it out of its system
      // reset (VFIO_DEVICE_FLAGS_RESET, no PM reset), which is what
      // `vfiokit upgrade` needs (packages/cli/src/cpr-reset.ts).
      role: 'bus-reset',
      bdf: '0000:04:00.0',
      model: 'edu',
      driver: 'vfio-pci',
      groupWith: ['bus-reset'],
      groupBridges: [],
      resetMethods: ['bus'],
      resetWorks: true,
    },
  ],
};

/**
 * The `-device` arguments that build X86_TOPOLOGY behind `iommuDevice` (the
 * IOMMU comes first: devices attach to it as they are created). Without
 * one, the machine's own IOMMU serves (arm64 `virt,iommu=smmuv3`). `blocked`
 * and its virtio peer sit in two slots behind a PCIe-to-PCI bridge, or as
 * two functions behind a root port (arm64: see ../arm64/guest.ts);
 * `bridge-a` and `bridge-b` and their bridge may be left out (virtio-iommu:
 * X86_ROOT_PORT_TOPOLOGY), and so may `bus-reset` and its root port (the
 * topologies that do not list it: X86_ROOT_PORT_TOPOLOGY, arm64's).
 */
export function x86TopologyArgs(
  iommuDevice?: string,
  blocked: 'behind-bridge' | 'root-port-functions' = 'behind-bridge',
  bridgePair: 'bridge-pair' | 'no-bridge-pair' = 'bridge-pair',
  busReset: 'bus-reset-port' | 'no-bus-reset-port' = 'bus-reset-port',
): string[] {
  const d = (spec: string): string[] => ['-device', spec];
  return [
    ...(iommuDevice === undefined ? [] : d(iommuDevice)),
    ...d('edu,id=solo,bus=pcie.0,addr=0x3'),
    ...(bridgePair === 'bridge-pair'
      ? [...d('pcie-pci-bridge,id=br1,bus=pcie.0,addr=0x4'), ...d('edu,id=bridge-a,bus=br1,addr=0x1'), ...d('edu,id=bridge-b,bus=br1,addr=0x2')]
      : []),
    ...d('pcie-root-port,id=rp1,chassis=1,bus=pcie.0,addr=0x5'),
    ...d('edu,id=mf-0,bus=rp1,addr=0x0.0,multifunction=on'),
    ...d('edu,id=mf-1,bus=rp1,addr=0x0.1'),
    ...(blocked === 'behind-bridge'
      ? [...d('pcie-pci-bridge,id=br2,bus=pcie.0,addr=0x6'), ...d('edu,id=blocked,bus=br2,addr=0x1'), ...d('virtio-rng-pci,id=blocked-peer,bus=br2,addr=0x2')]
      : [
          ...d('pcie-root-port,id=rp2,chassis=2,bus=pcie.0,addr=0x6'),
          ...d('edu,id=blocked,bus=rp2,addr=0x0.0,multifunction=on'),
          ...d('virtio-rng-pci,id=blocked-peer,bus=rp2,addr=0x0.1'),
        ]),
    ...(busReset === 'bus-reset-port' ? [...d('pcie-root-port,id=rp3,chassis=3,bus=pcie.0,addr=0x7'), ...d('edu,id=bus-reset,bus=rp3,addr=0x0')] : []),
  ];
}

// QEMU's virtio-iommu cannot serve a Linux guest's device behind a
// PCIe-to-PCI bridge (measured with QEMU 7.2.22, the lab's, and 10.0.2 on
// the lab's 6.12 kernel: vfio-pci's probe of 01:01.0 fails with -22 and the
// device has no iommu_group; the raw output is in
// ../iommufd/virtio-iommu-bridge.md). The two sides disagree on the
// device's endpoint ID:
//  - QEMU gives a device on a conventional bus the address space of its
//    requester-ID alias, the PCIe-to-PCI bridge's secondary bus with devfn
//    0 (hw/pci/pci.c pci_device_iommu_address_space), so virtio-iommu knows
//    only endpoint 01:00.0 (virtio_iommu_find_add_as registers that devfn);
//  - Linux's VIOT walks the device's DMA aliases own ID first
//    (drivers/acpi/viot.c viot_pci_dev_iommu_init via pci_for_each_dma_alias),
//    so the fwspec holds 01:01.0 then 01:00.0, and virtio-iommu PROBEs only
//    ids[0] (drivers/iommu/virtio-iommu.c viommu_probe_endpoint, "Only probe
//    the first one"): QEMU answers VIRTIO_IOMMU_S_NOENT for it
//    (hw/virtio/virtio-iommu.c virtio_iommu_probe -> virtio_iommu_mr),
//    viommu_probe_device fails, the device joins no group, and vfio-pci's
//    vfio_group_find_or_alloc refuses a device without one (-EINVAL).
// The ACPI VIOT itself is right (its PCI range covers buses 0-3), and a
// device behind a root port (PCIe to PCIe, no alias) works. So the
// virtio-iommu boot uses only pcie.0 and root ports, and drops the roles
// that exist to sit behind a bridge.

/** X86_TOPOLOGY's `role` at `bdf`, in a group of its own functions only (no bridge). */
function moved(role: string, bdf: string): LabDevice {
  const d = X86_TOPOLOGY.devices.find((x) => x.role === role);
  if (d === undefined) throw new Error(`X86_TOPOLOGY has no role ${role}`);
  return { ...d, bdf, groupBridges: [] };
}

/**
 * The x86 roles on pcie.0 and behind root ports only (no `bridge-a` or
 * `bridge-b`; no `bus-reset`, which only the upgrade lab case uses): `mf-0`/`mf-1` behind one root port, `blocked` and its
 * virtio peer as functions 0 and 1 behind another, as on arm64. With no
 * bridge at 00:04.0, SeaBIOS numbers the root ports' buses 01 and 02.
 */
export const X86_ROOT_PORT_TOPOLOGY: LabTopology = {
  ...X86_TOPOLOGY,
  name: 'x86-q35-edu-root-ports',
  devices: [
    moved('solo', '0000:00:03.0'),
    moved('mf-0', '0000:01:00.0'),
    moved('mf-1', '0000:01:00.1'),
    moved('blocked', '0000:02:00.0'),
    moved('blocked-peer', '0000:02:00.1'),
  ],
};

/** The `-device` arguments that build X86_ROOT_PORT_TOPOLOGY behind `iommuDevice`. */
export function x86RootPortTopologyArgs(iommuDevice: string): string[] {
  return x86TopologyArgs(iommuDevice, 'root-port-functions', 'no-bridge-pair', 'no-bus-reset-port');
}
