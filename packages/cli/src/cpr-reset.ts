// Which assigned devices a cpr-transfer would lose the guest over: those the
// incoming QEMU resets while the outgoing one still runs the guest.
//
// QEMU marks a VFIO PCI device for its system-reset handler in
// vfio_pci_compute_needs_reset (hw/vfio/pci.c): when the kernel offers it no
// reset (`!reset_works`, i.e. VFIO_DEVICE_GET_INFO without
// VFIO_DEVICE_FLAGS_RESET), or when it has a PM reset but no FLR
// (`!has_flr && has_pm_reset`; QEMU would rather do a bus reset then). The
// lab showed what happens under cpr-transfer (QEMU 11.1.3): the new QEMU runs
// that handler on the descriptors it was sent, writes the device's command
// register with memory decoding off, vfio-pci zaps every mmap of its BARs,
// and the old QEMU dies with SIGBUS on the guest's next BAR access. A device
// QEMU does not mark goes through: the lab's `bus-reset` edu (alone behind
// its own root port, reset_method `bus`, VFIO_DEVICE_FLAGS_RESET) was
// upgraded under KVM with its DMA running (upgrade.lab.ts).
//
// The kernel side, from sysfs without opening the device:
// - VFIO_DEVICE_FLAGS_RESET is vdev->reset_works (vfio_pci_ioctl_get_info),
//   set in vfio_pci_core_enable from pci_try_reset_function(), which answers
//   -ENOTTY when pci_reset_supported() is false (no method in
//   dev->reset_methods; drivers/pci/pci.c). The `reset_method` attribute is
//   visible only when pci_reset_supported() (pci_dev_reset_method_attr_is_visible),
//   so a function without it has no VFIO_DEVICE_FLAGS_RESET.
// - QEMU's has_flr is the PCIe DEVCAP FLR bit or the AF capability's FLR bit
//   (vfio_check_pcie_flr, vfio_check_af_flr), which are what the kernel's
//   `flr` (pcie_reset_flr) and `af_flr` (pci_af_flr) methods test; has_pm_reset
//   is a PM capability without NO_SOFT_RESET (vfio_check_pm_reset), what the
//   kernel's `pm` method (pci_pm_reset) tests.
// - `reset_method` is probed when the function is added, and `bus` goes
//   stale once another function joins its bus (pci_parent_bus_reset takes
//   only a function alone on its bus): the x86 lab's first edu behind a
//   PCIe-to-PCI bridge lists `bus` yet has no VFIO_DEVICE_FLAGS_RESET. So
//   `bus` counts only while the function is alone on its bus
//   (workingResetMethods in @vfiokit/core).
// The list can differ from the capabilities through quirks and the
// administrator: a PCI_DEV_FLAGS_NO_FLR_RESET quirk, or a write to
// reset_method, drops `flr` that QEMU still sees in config space (this check
// is then stricter than QEMU); a PCI_DEV_FLAGS_NO_PM_RESET quirk drops `pm`
// that QEMU still sees (looser: such a device without FLR is marked by QEMU
// but passes here unless it has no method at all).
import { parseConfigSpace, PCI_DEVICES, workingResetMethods, type HostFs } from '@vfiokit/core';

export interface IncomingReset {
  readonly address: string;
  /** The kernel's reset methods (`reset_method`), empty when it offers none. */
  readonly methods: readonly string[];
  /** Why QEMU marks it for reset, in words. */
  readonly cause: string;
}

/** The reset methods the kernel lists for `address` (`reset_method`); empty when the attribute is absent. */
export function resetMethodsOf(fs: HostFs, address: string): string[] {
  return fs.readText(`${PCI_DEVICES}/${address}/reset_method`)?.trim().split(/\s+/).filter(Boolean) ?? [];
}

/**
 * The devices among `addresses` that QEMU's vfio_pci_compute_needs_reset
 * marks, so that the incoming QEMU of a cpr-transfer resets them under the
 * running guest; empty when none is.
 */
export function devicesQemuResetsOnIncoming(fs: HostFs, addresses: readonly string[]): IncomingReset[] {
  const marked: IncomingReset[] = [];
  const functions = fs.list(PCI_DEVICES);
  for (const address of addresses) {
    const methods = resetMethodsOf(fs, address);
    const working = workingResetMethods(address, methods, functions);
    const flr = methods.includes('flr') || methods.includes('af_flr');
    if (methods.length === 0) {
      marked.push({ address, methods, cause: 'the kernel offers no reset for it (no reset_method: VFIO reports it without VFIO_DEVICE_FLAGS_RESET)' });
    } else if (working.length === 0) {
      marked.push({
        address,
        methods,
        cause: `its only reset is a bus reset, and other functions share its bus now (reset_method: ${methods.join(' ')}, probed when it was alone): VFIO reports it without VFIO_DEVICE_FLAGS_RESET`,
      });
    } else if (!flr && methods.includes('pm')) {
      marked.push({ address, methods, cause: `its only function-level reset is a PM reset, without FLR (reset_method: ${methods.join(' ')})` });
    }
  }
  return marked;
}

/** A device whose interrupts make QEMU's cpr-transfer call into KVM. */
export interface KvmBoundInterrupts {
  readonly address: string;
  /** What it has, in words (`an interrupt pin (INTx)`, `MSI`, `MSI-X`). */
  readonly interrupts: string;
}

/**
 * The devices among `addresses` whose interrupts QEMU hands over through KVM
 * in a cpr-transfer, so that the old QEMU dies when it runs without KVM.
 *
 * When the migration starts, QEMU detaches each VFIO PCI device's interrupts
 * from the device so they queue in KVM's irqfd (hw/vfio/cpr.c,
 * vfio_cpr_pci_notifier at MIG_EVENT_PRECOPY_SETUP -> vfio_cpr_set_msi_virq):
 * for MSI-X or MSI vectors in use, or else for an interrupt pin, it calls
 * kvm_irqchip_remove_irqfd_notifier_gsi(kvm_state, ...) without asking
 * whether KVM runs. Under TCG kvm_state is NULL and the old QEMU dies with
 * SIGSEGV (the x86 lab, QEMU 11.1.3: the main thread faults on the KVM_IRQFD
 * ioctl's vm fd, `mov 0x38(%r12)` with r12 = 0). A device with neither a pin
 * nor MSI/MSI-X is skipped there; one with MSI or MSI-X but no pin is safe
 * only while the guest has not enabled them, which it may do at any time,
 * so it counts too. Read from sysfs `config` (the pin at 0x3d, the
 * capability list), as the kernel shows it; vfio-pci can hide a pin it
 * cannot mask (vdev->nointx), which only makes this stricter.
 */
export function devicesCprTransferNeedsKvmFor(fs: HostFs, addresses: readonly string[]): KvmBoundInterrupts[] {
  const found: KvmBoundInterrupts[] = [];
  for (const address of addresses) {
    const config = parseConfigSpace(fs.readBytes(`${PCI_DEVICES}/${address}/config`, 256));
    // Unreadable: assume interrupts, as nearly every device has them.
    const what = config === undefined ? ['interrupts (its config space is unreadable)'] : [...(config.interruptPin !== 0 ? ['an interrupt pin (INTx)'] : []), ...(config.msi ? ['MSI'] : []), ...(config.msix ? ['MSI-X'] : [])];
    if (what.length > 0) found.push({ address, interrupts: what.join(', ') });
  }
  return found;
}
