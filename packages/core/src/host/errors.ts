// Errors of the host model. Each subclass is a case a caller handles
// differently; codes are stable (the CLI maps them to exit codes).
import { VfiokitError, type VfiokitErrorOptions } from '../errors';

/** Base of every host-model error. */
export class HostError extends VfiokitError {}

/** A PCI address that does not parse (`HOST_INVALID_ADDRESS`). */
export class InvalidAddressError extends HostError {
  constructor(readonly input: string) {
    super(
      'HOST_INVALID_ADDRESS',
      `'${input}' is not a PCI address: expected DOMAIN:BUS:DEVICE.FUNCTION in hex, like 0000:01:00.0 (or 01:00.0 for domain 0)`,
      { hint: "list the host's devices with 'vfiokit ls'" },
    );
  }
}

/** A well-formed address that names no device on this host. */
export class DeviceNotFoundError extends HostError {
  constructor(
    readonly address: string,
    options: VfiokitErrorOptions = {},
  ) {
    super('HOST_DEVICE_NOT_FOUND', `no PCI device ${address} on this host (not in /sys/bus/pci/devices)`, {
      hint: options.hint ?? "list the host's devices with 'vfiokit ls'",
      cause: options.cause,
    });
  }
}

/** An IOMMU group number that does not exist. */
export class GroupNotFoundError extends HostError {
  constructor(readonly group: number) {
    super('HOST_GROUP_NOT_FOUND', `no IOMMU group ${group} on this host (not in /sys/kernel/iommu_groups)`, {
      hint: "list the host's IOMMU groups with 'vfiokit ls'",
    });
  }
}

/** A device that has no IOMMU group (no IOMMU, or the IOMMU is off). */
export class NoIommuError extends HostError {
  constructor(message: string, hint?: string) {
    super('HOST_NO_IOMMU', message, {
      hint:
        hint ??
        'enable the IOMMU (VT-d / AMD-Vi) in firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD); check /sys/kernel/iommu_groups',
    });
  }
}

/** A group that VFIO would refuse: a device in it is held by a DMA-using driver. */
export class GroupNotViableError extends HostError {
  constructor(
    readonly group: number,
    message: string,
    hint: string,
  ) {
    super('HOST_GROUP_NOT_VIABLE', message, { hint });
  }
}

/** A viable group whose devices are not (all) on vfio-pci yet, so VFIO or QEMU cannot open them. */
export class GroupNotBoundError extends HostError {
  constructor(
    readonly group: number,
    message: string,
    hint: string,
  ) {
    super('HOST_GROUP_NOT_BOUND', message, { hint });
  }
}

/** A host-safety rule refused to detach a device the host needs. */
export class UnsafeDetachError extends HostError {
  constructor(
    readonly address: string,
    readonly rule: string,
    message: string,
    hint: string,
  ) {
    super('HOST_UNSAFE_DETACH', message, { hint });
  }
}

/** vfio-pci is not loaded, so nothing can be bound to it. */
export class VfioPciUnavailableError extends HostError {
  constructor() {
    super('HOST_VFIO_PCI_UNAVAILABLE', 'the vfio-pci driver is not loaded (no /sys/bus/pci/drivers/vfio-pci)', {
      hint: "load it with 'modprobe vfio-pci' and try again",
    });
  }
}

/**
 * A driver switch failed part way. Every device was put back (or the message
 * says which one could not be), so the host is as it was before the call.
 */
export class BindFailedError extends HostError {
  constructor(
    message: string,
    readonly errno: string | undefined,
    readonly steps: readonly string[],
    options: VfiokitErrorOptions = {},
  ) {
    super('HOST_BIND_FAILED', message, options);
  }
}

/** Rolling back a failed switch failed too: the host is NOT as it was. */
export class RollbackFailedError extends HostError {
  constructor(
    message: string,
    readonly steps: readonly string[],
    options: VfiokitErrorOptions = {},
  ) {
    super('HOST_ROLLBACK_FAILED', message, options);
  }
}

/** The locked-memory limit is too low for what an assignment will pin. */
export class MemlockTooLowError extends HostError {
  constructor(message: string, hint: string) {
    super('HOST_MEMLOCK_TOO_LOW', message, { hint });
  }
}

/** The binding records under the state folder cannot be read or written. */
export class StateError extends HostError {
  constructor(message: string, options: VfiokitErrorOptions = {}) {
    super('HOST_STATE', message, options);
  }
}
