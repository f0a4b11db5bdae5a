// Refusals vfio-pci's probe would give, known from sysfs before anything
// changes. One rule, two users: bind refuses the group before writing, and the
// viability report does not tell the user to run a bind that would refuse.
import type { PciDevice } from './model';

/** Why vfio-pci would refuse (or bind must not take) a device, and what to do instead. */
export interface ProbeRefusal {
  readonly address: string;
  /** Stable code of the HostError bind throws for it. */
  readonly code: 'HOST_SRIOV_ENABLED';
  /** The cause, naming the device. */
  readonly reason: string;
  /** What to do first, as a sentence. */
  readonly hint: string;
  /** The one command that clears the refusal. */
  readonly fix: string;
}

/** The refusal vfio-pci's probe would give `device`, or undefined when none is known. */
export function knownProbeRefusal(device: PciDevice): ProbeRefusal | undefined {
  if (device.sriov && device.sriov.numVfs > 0) {
    // Unbinding a PF's driver tears its VFs down (the driver's remove disables
    // SR-IOV), VFs perhaps in use by guests; and a PF whose VFs survive is
    // refused by vfio_pci_core_register_device ("Cannot bind to PF with SR-IOV
    // enabled", EBUSY). Either way it is the operator's call, made first.
    const from = device.driver === undefined ? '' : `moving it off ${device.driver} would tear them down, and `;
    const fix = `echo 0 > /sys/bus/pci/devices/${device.address}/sriov_numvfs`;
    return {
      address: device.address,
      code: 'HOST_SRIOV_ENABLED',
      reason: `${device.address} is an SR-IOV physical function with ${device.sriov.numVfs} VFs enabled: ${from}vfio-pci refuses a PF whose VFs remain`,
      hint: `disable them first (${fix}), or assign a VF instead`,
      fix,
    };
  }
  return undefined;
}
