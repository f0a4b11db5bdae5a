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
    { role: 'mf-0', bdf: '0000:02:00.0', model: 'edu', driver: 'vfio-pci', groupWith: ['mf-0', 'mf-1'], groupBridges: [] },
    { role: 'mf-1', bdf: '0000:02:00.1', model: 'edu', driver: 'vfio-pci', groupWith: ['mf-0', 'mf-1'], groupBridges: [] },
    {
      role: 'blocked',
      bdf: '0000:03:01.0',
      model: 'edu',
      driver: 'vfio-pci',
      groupWith: ['blocked', 'blocked-peer'],
      groupBridges: ['0000:00:06.0'],
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
  ],
};

/**
 * The `-device` arguments that build X86_TOPOLOGY behind `iommuDevice` (the
 * IOMMU comes first: devices attach to it as they are created). Without
 * one, the machine's own IOMMU serves (arm64 `virt,iommu=smmuv3`). `blocked`
 * and its virtio peer sit in two slots behind a PCIe-to-PCI bridge, or as
 * two functions behind a root port (arm64: see ../arm64/guest.ts).
 */
export function x86TopologyArgs(iommuDevice?: string, blocked: 'behind-bridge' | 'root-port-functions' = 'behind-bridge'): string[] {
  const d = (spec: string): string[] => ['-device', spec];
  return [
    ...(iommuDevice === undefined ? [] : d(iommuDevice)),
    ...d('edu,id=solo,bus=pcie.0,addr=0x3'),
    ...d('pcie-pci-bridge,id=br1,bus=pcie.0,addr=0x4'),
    ...d('edu,id=bridge-a,bus=br1,addr=0x1'),
    ...d('edu,id=bridge-b,bus=br1,addr=0x2'),
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
  ];
}
