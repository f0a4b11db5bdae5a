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
// and the old QEMU dies with SIGBUS on the guest's next BAR access.
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
// The list can differ from the capabilities through quirks and the
// administrator: a PCI_DEV_FLAGS_NO_FLR_RESET quirk, or a write to
// reset_method, drops `flr` that QEMU still sees in config space (this check
// is then stricter than QEMU); a PCI_DEV_FLAGS_NO_PM_RESET quirk drops `pm`
// that QEMU still sees (looser: such a device without FLR is marked by QEMU
// but passes here unless it has no method at all).
import { PCI_DEVICES, type HostFs } from '@vfiokit/core';

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
  for (const address of addresses) {
    const methods = resetMethodsOf(fs, address);
    const flr = methods.includes('flr') || methods.includes('af_flr');
    if (methods.length === 0) {
      marked.push({ address, methods, cause: 'the kernel offers no reset for it (no reset_method: VFIO reports it without VFIO_DEVICE_FLAGS_RESET)' });
    } else if (!flr && methods.includes('pm')) {
      marked.push({ address, methods, cause: `its only function-level reset is a PM reset, without FLR (reset_method: ${methods.join(' ')})` });
    }
  }
  return marked;
}
