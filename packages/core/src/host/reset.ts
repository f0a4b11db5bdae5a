// Resetting a PCI function between owners, as libvirt does when a managed
// guest ends (virHostdevReAttachPCIDevices resets every device before it goes
// back to its host driver): the guest may have left it mid-DMA or with state
// the host driver does not expect.
//
// The kernel offers one way for anyone: a write of "1" to the function's
// `reset` attribute (reset_store -> pci_reset_function, drivers/pci/pci-sysfs.c),
// which tries the methods in `reset_method` in order (flr, af_flr, pm, bus...).
// The attribute exists only when the function has at least one method
// (pci_dev_reset_attr_is_visible), so its absence is the kernel's "no reset
// for this device", not an error. vfio-pci also resets a device when its last
// user closes it (vfio_pci_core_disable), but only when a reset can be done
// without touching other devices; the explicit write says in the output
// whether the device was reset.
import { PCI_DEVICES } from './discover';
import { errnoOf, type HostFs } from './seam';

export interface ResetOutcome {
  readonly address: string;
  /** True when the kernel reset the function. */
  readonly done: boolean;
  /** The methods the kernel would try (`reset_method`), when it says. */
  readonly methods: readonly string[];
  /** Why it was not reset: no method, or the errno the kernel answered. */
  readonly reason?: string;
  /** The write, as a shell command, when one was made. */
  readonly step?: string;
}

/** Reset one PCI function through sysfs, if the kernel can; never throws for a device that cannot be reset. */
export function resetFunction(host: HostFs, address: string): ResetOutcome {
  const dir = `${PCI_DEVICES}/${address}`;
  const methods = host.readText(`${dir}/reset_method`)?.trim().split(/\s+/).filter(Boolean) ?? [];
  if (!host.exists(`${dir}/reset`)) {
    return { address, done: false, methods, reason: 'the kernel offers no reset for it (no reset attribute: no FLR, PM or bus reset applies)' };
  }
  const step = `echo 1 > ${dir}/reset`;
  try {
    host.writeText(`${dir}/reset`, '1');
    return { address, done: true, methods, step };
  } catch (err) {
    const errno = errnoOf(err);
    return { address, done: false, methods, step, reason: `the kernel refused the reset${errno ? ` with ${errno}` : ''}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/**
 * The methods of `address`'s `reset_method` list (`methods`) that still
 * work, given the addresses of every PCI function on the host (`functions`):
 * what vfio-pci finds when the device is opened (vfio_pci_core_enable sets
 * reset_works from pci_try_reset_function, VFIO_DEVICE_FLAGS_RESET).
 *
 * The list is probed once, when the function is added
 * (pci_init_reset_methods from pci_device_add, drivers/pci/probe.c), and
 * `bus` can go stale: pci_parent_bus_reset (drivers/pci/pci.c) takes only a
 * function alone on its bus, and the first function enumerated on a bus is
 * alone when it is probed. The x86 lab measured it: of two edu devices
 * behind one PCIe-to-PCI bridge, the first lists `bus`, yet VFIO reports it
 * without VFIO_DEVICE_FLAGS_RESET and DEVICE_RESET answers EINVAL. A slot
 * reset (the same `bus` entry, through a hotplug driver's reset_slot) is
 * also refused for a multifunction device, which is never alone on its bus;
 * so `bus` counts only while no other function shares the bus.
 */
export function workingResetMethods(address: string, methods: readonly string[], functions: readonly string[]): string[] {
  const bus = address.slice(0, address.lastIndexOf(':') + 1);
  const alone = !functions.some((f) => f !== address && f.startsWith(bus));
  return methods.filter((m) => m !== 'bus' || alone);
}
