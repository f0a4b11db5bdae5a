// The x86 hosts the lab boots: one q35 guest with the same edu topology,
// behind a different emulated IOMMU or interrupt-remapping state each time.
// A host is data (QEMU's IOMMU device, kernel arguments, module parameters,
// the mock profile it is compared with), never a branch through the runner
// or the mock: a new host IOMMU is a new entry here and a new mock profile
// in crates/vfio-lab/src/mock_host.rs.

import { LabTopology } from './topology';

/** What the mock must be configured as to answer like this guest (read by crates/vfio-lab/src/host.rs). */
export interface LabHostFacts {
  /** The mock's host profile: `vtd`, `amd-vi`, `smmuv3`, `virtio-iommu`. */
  readonly iommu: 'vtd' | 'amd-vi' | 'smmuv3' | 'virtio-iommu';
  /**
   * Whether MSIs are isolated (x86: interrupt remapping on; Arm: a GIC ITS).
   * Without it vfio_iommu_type1 refuses VFIO_SET_IOMMU with EPERM unless
   * `allowUnsafeInterrupts`.
   */
  readonly msiIsolated: boolean;
  /**
   * The `allow_unsafe_interrupts` module parameter of the kernel's VFIO
   * IOMMU backend: vfio_iommu_type1's, or iommufd's on the lab's iommufd
   * kernel (there both the cdev and the compat container bind through
   * iommufd_device_bind, which checks it).
   */
  readonly allowUnsafeInterrupts: boolean;
  /**
   * The guest kernel's version (`7.2.13-1`), where the mock's answers
   * depend on it: the iommufd lab's kernel builds from linux-source-7.2 or
   * linux-source-6.12. Absent: the newest the mock models.
   */
  readonly kernel?: string;
}

export interface X86Host {
  /** The lab profile's name (`pnpm lab -- <name>`). */
  readonly name: string;
  readonly description: string;
  /** `-M` value. */
  readonly machine: string;
  /** The IOMMU's `-device` (created before the devices that sit behind it). */
  readonly iommuDevice: string;
  /**
   * The guest's devices and the `-device` arguments that build them behind
   * `iommuDevice`; X86_TOPOLOGY (x86TopologyArgs) when absent.
   */
  readonly topology?: { readonly layout: LabTopology; readonly args: (iommuDevice: string) => string[] };
  /** Kernel arguments that turn the IOMMU (and interrupt remapping) on or off. */
  readonly kernelArgs: string;
  /** vfio_iommu_type1's parameters beyond the topology's dma_entry_limit. */
  readonly type1Params: readonly string[];
  readonly facts: LabHostFacts;
  /**
   * Whether the guest also runs every package's `*.lab.js` (node in the
   * guest costs minutes under TCG). The variant hosts run the conformance
   * suite, which is where they differ; the lab cases need the working VT-d.
   */
  readonly labCases: boolean;
  /** The guest kernel's log line for a DMA the IOMMU refused (the console verdict). */
  readonly faultLine: RegExp;
  /**
   * Conformance cases where QEMU's emulated IOMMU, not the kernel, differs
   * from real hardware, by case name, with the reason. When such a case
   * disagrees with the mock it is reported as skipped with the reason (not
   * passed); when it agrees it passes, so a QEMU that fixes the gap shows.
   */
  readonly emulationGaps?: Readonly<Record<string, string>>;
}

/**
 * QEMU 7.2's amd-iommu drops edu DMA from devices off the root bus (behind
 * a root port or a PCIe-to-PCI bridge) without logging a fault; DMA from a
 * device on pcie.0 goes through (measured: x86-amd, 6.1.0-57).
 */
const AMD_OFF_ROOT_BUS_DMA = "QEMU 7.2's amd-iommu does not carry edu DMA from a device behind a root port (mf-0 at 02:00.0); DMA from solo on pcie.0 works";

/** VT-d's DMAR fault report (drivers/iommu/intel/dmar.c, dmar_fault_do_one). */
const DMAR_FAULT = /DMAR: \[DMA (Write|Read)[^\]]*\] Request device \[[0-9a-f:.]+\]/;
/** AMD-Vi's IO_PAGE_FAULT event (drivers/iommu/amd/iommu.c, amd_iommu_report_page_fault). */
const AMD_FAULT = /Event logged \[IO_PAGE_FAULT domain=0x[0-9a-f]+ address=0x[0-9a-f]+ flags=0x[0-9a-f]+\]/;

// kernel-irqchip=split is what interrupt remapping needs in QEMU (the IOAPIC
// in QEMU, the LAPIC in the accelerator); it is harmless without it.
const Q35 = 'q35,kernel-irqchip=split';
// no_timer_check: under TCG on a loaded host the IO-APIC timer check
// (check_timer) can miss its ticks and panic "timer doesn't work through
// Interrupt-remapped IO-APIC"; the check is for broken chipsets, not QEMU.
const COMMON_ARGS = 'no_timer_check';

export const X86_HOSTS: readonly X86Host[] = [
  {
    name: 'x86',
    description: 'q35 + intel-iommu (VT-d), Debian 6.1 amd64, edu devices: type1v2 on the real kernel',
    machine: Q35,
    iommuDevice: 'intel-iommu,intremap=on,caching-mode=on',
    kernelArgs: `intel_iommu=on iommu=on ${COMMON_ARGS}`,
    type1Params: [],
    facts: { iommu: 'vtd', msiIsolated: true, allowUnsafeInterrupts: false },
    labCases: true,
    faultLine: DMAR_FAULT,
  },
  {
    name: 'x86-amd',
    description: 'q35 + amd-iommu (AMD-Vi, interrupt remapping on), Debian 6.1 amd64: its reserved regions and IOVA ranges',
    machine: Q35,
    iommuDevice: 'amd-iommu,intremap=on',
    kernelArgs: `iommu=on ${COMMON_ARGS}`,
    type1Params: [],
    facts: { iommu: 'amd-vi', msiIsolated: true, allowUnsafeInterrupts: false },
    labCases: false,
    faultLine: AMD_FAULT,
    emulationGaps: {
      // Every DMA the suite makes the IOMMU refuse comes from a device off
      // the root bus, so none reaches it to fault.
      'the guest kernel logged IOMMU faults for the DMAs the IOMMU refused': AMD_OFF_ROOT_BUS_DMA,
      'after unmap the same edu DMA writes nothing': AMD_OFF_ROOT_BUS_DMA,
      'a group that joins a container later DMAs through mappings made before it joined': AMD_OFF_ROOT_BUS_DMA,
    },
  },
  {
    name: 'x86-noir',
    description: 'q35 + VT-d with interrupt remapping off (QEMU and guest): VFIO_SET_IOMMU refused',
    machine: Q35,
    iommuDevice: 'intel-iommu,intremap=off,caching-mode=on',
    kernelArgs: `intel_iommu=on iommu=on intremap=off ${COMMON_ARGS}`,
    type1Params: [],
    facts: { iommu: 'vtd', msiIsolated: false, allowUnsafeInterrupts: false },
    labCases: false,
    faultLine: DMAR_FAULT,
  },
  {
    name: 'x86-noir-unsafe',
    description: 'q35 + VT-d with interrupt remapping off, vfio_iommu_type1.allow_unsafe_interrupts=1: works, unsafely',
    machine: Q35,
    iommuDevice: 'intel-iommu,intremap=off,caching-mode=on',
    kernelArgs: `intel_iommu=on iommu=on intremap=off ${COMMON_ARGS}`,
    type1Params: ['allow_unsafe_interrupts=1'],
    facts: { iommu: 'vtd', msiIsolated: false, allowUnsafeInterrupts: true },
    labCases: false,
    faultLine: DMAR_FAULT,
  },
];
