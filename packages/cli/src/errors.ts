// The CLI's one error class, and the single place where errors from the layers
// below (core, qemu-bridge, commander, the OS) become an exit code, one clear
// message and a hint.
import { ExitCode } from './exit-codes';

export class CliError extends Error {
  constructor(
    /** Stable, machine-readable: scripts may match on it. */
    readonly code: string,
    message: string,
    readonly exitCode: ExitCode,
    /** What the user can do about it, one sentence. */
    readonly hint?: string,
    options?: { cause?: unknown; details?: readonly string[] },
  ) {
    super(message, options);
    this.name = 'CliError';
    this.details = options?.details ?? [];
  }

  /**
   * The items behind a one-line message (every problem of a spec, every
   * colliding region of a layout): all of them in --json, the first few on a
   * terminal.
   */
  readonly details: readonly string[];
}

/**
 * The run was stopped from outside (a signal, a closed stdout). main.ts
 * decides the exit code (128 + the signal number), not this error.
 */
export function interrupted(reason: string): CliError {
  return new CliError('INTERRUPTED', `interrupted by ${reason}`, ExitCode.Internal, undefined);
}

/** Errors from the layers below carry a stable `code`; this reads it without importing their classes. */
function layerCode(err: unknown): string | undefined {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Exit codes for the stable codes of the layers below. Each layer documents
 * its codes beside its error classes (core/src/host/errors.ts,
 * core/src/dma/errors.ts, qemu-bridge); a code missing here falls back to its
 * layer's prefix below.
 */
const EXIT_BY_CODE: Readonly<Record<string, ExitCode>> = {
  // Node's own, from fs and net.
  ENOENT: ExitCode.NotFound,
  EACCES: ExitCode.HostFailure,
  EPERM: ExitCode.HostFailure,
  ECONNREFUSED: ExitCode.QemuFailure,
  // core/host
  HOST_INVALID_ADDRESS: ExitCode.InvalidInput,
  HOST_DEVICE_NOT_FOUND: ExitCode.NotFound,
  HOST_GROUP_NOT_FOUND: ExitCode.NotFound,
  HOST_NO_IOMMU: ExitCode.Unavailable,
  HOST_VFIO_PCI_UNAVAILABLE: ExitCode.Unavailable,
  HOST_GROUP_NOT_VIABLE: ExitCode.Refused,
  HOST_GROUP_NOT_BOUND: ExitCode.Refused,
  HOST_UNSAFE_DETACH: ExitCode.Refused,
  HOST_MEMLOCK_TOO_LOW: ExitCode.Refused,
  // Refused before anything is written: a PF whose VFs would be torn down, a group a VMM holds open.
  HOST_SRIOV_ENABLED: ExitCode.Refused,
  HOST_GROUP_IN_USE: ExitCode.Refused,
  HOST_DRIVER_MISSING: ExitCode.Unavailable,
  HOST_BIND_FAILED: ExitCode.HostFailure,
  HOST_ROLLBACK_FAILED: ExitCode.HostFailure,
  HOST_STATE: ExitCode.HostFailure,
  // Boot persistence refused before anything is written.
  HOST_PERSIST_BRIDGES_ONLY: ExitCode.Refused,
  HOST_PERSIST_BRIDGE: ExitCode.Refused,
  HOST_PERSIST_SHARED_IDS: ExitCode.Refused,
  HOST_PERSIST_BUILTIN_DRIVER: ExitCode.Refused,
  HOST_PERSIST_NO_UDEV: ExitCode.Unavailable,
  // core/dma
  DMA_INVALID_LAYOUT: ExitCode.InvalidInput,
  DMA_TRACE: ExitCode.InvalidInput,
  DMA_GUEST_OP: ExitCode.InvalidInput,
  DMA_IOVA_COLLISION: ExitCode.Refused,
  DMA_ENTRY_LIMIT: ExitCode.Refused,
  DMA_HOST_REFUSAL: ExitCode.Refused,
  DMA_TARGET_FAILED: ExitCode.HostFailure,
  // core/plan: the spec names a device this host does not have.
  PLAN_DEVICE_NOT_FOUND: ExitCode.NotFound,
  // qemu-bridge (its QMP_*, QEMU_*, HOTPLUG_* and UNPLUG_* codes fall to the prefixes below)
  HOTPLUG_INVALID_REQUEST: ExitCode.InvalidInput,
  VM_DESCRIPTION_INVALID: ExitCode.InvalidInput,
  CPR_TRANSFER_FAILED: ExitCode.QemuFailure,
};

/** A code this table does not list yet: its layer says what kind of failure it is. */
const EXIT_BY_PREFIX: readonly (readonly [string, ExitCode])[] = [
  ['HOST_', ExitCode.HostFailure],
  ['DMA_', ExitCode.Refused],
  ['PLAN_', ExitCode.Refused],
  ['VFIO_', ExitCode.HostFailure],
  ['QMP_', ExitCode.QemuFailure],
  ['QEMU_', ExitCode.QemuFailure],
  ['HOTPLUG_', ExitCode.QemuFailure],
  ['UNPLUG_', ExitCode.QemuFailure],
  ['MEMORY_LAYOUT_', ExitCode.QemuFailure],
  // vfio-core's loader (crates/vfio-core/loader.js): no binary for this machine's triple.
  ['NATIVE_', ExitCode.Unavailable],
];

export function exitCodeFor(code: string | undefined): ExitCode {
  if (code === undefined) return ExitCode.Internal;
  const exact = EXIT_BY_CODE[code];
  if (exact !== undefined) return exact;
  for (const [prefix, exit] of EXIT_BY_PREFIX) if (code.startsWith(prefix)) return exit;
  // An errno from the kernel (EBUSY from a sysfs write, EINVAL from an ioctl).
  if (/^E[A-Z0-9]+$/.test(code)) return ExitCode.HostFailure;
  return ExitCode.Internal;
}

/**
 * What the CLI prints and exits with for an error: its code, message, hint
 * and details, and the exit code.
 */
export interface ErrorReport {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
  readonly exitCode: ExitCode;
  readonly details: readonly string[];
  /** What was thrown, for --debug's stack trace. */
  readonly error: unknown;
}

/**
 * Reads anything thrown as a report, building no new error: each layer's own
 * error (core's VfiokitError family, vfio-core's VfioError, qemu-bridge's,
 * Node's) already carries a stable `code`, a message naming object, cause
 * and fix, and maybe a `hint`; the CLI only adds the exit code for the code.
 * Anything without a code is a bug, reported as one.
 */
export function reportOf(err: unknown): ErrorReport {
  if (err instanceof CliError) return { code: err.code, message: err.message, ...(err.hint === undefined ? {} : { hint: err.hint }), exitCode: err.exitCode, details: err.details, error: err };
  const code = layerCode(err);
  if (err instanceof Error && code !== undefined) {
    const hint = (err as { hint?: unknown }).hint;
    const details = (err as { details?: unknown }).details;
    return {
      code,
      message: err.message,
      ...(typeof hint === 'string' ? { hint } : {}),
      exitCode: exitCodeFor(code),
      details: Array.isArray(details) ? details.map(String) : [],
      error: err,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message: `internal error: ${message}`, hint: 'rerun with --debug and report the stack trace', exitCode: ExitCode.Internal, details: [], error: err };
}

export function notFound(message: string, hint: string): CliError {
  return new CliError('NOT_FOUND', message, ExitCode.NotFound, hint);
}

export function invalidInput(message: string, hint: string): CliError {
  return new CliError('INVALID_INPUT', message, ExitCode.InvalidInput, hint);
}

export function refused(code: string, message: string, hint?: string): CliError {
  return new CliError(code, message, ExitCode.Refused, hint);
}
