// One error family for @vfiokit/qemu-bridge. Callers branch on `code` (stable
// strings) or on the subclass; messages name the object, the cause and the fix.

export type QemuBridgeErrorCode =
  | 'QMP_CONNECT_FAILED'
  | 'QMP_PROTOCOL_VIOLATION'
  | 'QMP_DISCONNECTED'
  | 'QMP_TIMEOUT'
  | 'QMP_COMMAND_FAILED'
  | 'QMP_OOB_UNAVAILABLE'
  | 'QMP_INVALID_ARGUMENTS'
  | 'QMP_FD_PASSING_FAILED'
  | 'QMP_BAD_REPLY'
  | 'QEMU_UNSUPPORTED'
  | 'HOTPLUG_INVALID_REQUEST'
  | 'HOTPLUG_NO_FREE_SLOT'
  | 'HOTPLUG_FAILED'
  | 'HOTPLUG_NOT_VERIFIED'
  | 'UNPLUG_NOT_ACKNOWLEDGED'
  | 'UNPLUG_REJECTED_BY_GUEST'
  | 'VM_DESCRIPTION_INVALID'
  | 'MEMORY_LAYOUT_UNSUPPORTED'
  | 'QEMU_LAUNCH_FAILED'
  | 'CPR_TRANSFER_FAILED'
  | 'PROCESS_SPAWN_FAILED';

export class QemuBridgeError extends Error {
  readonly code: QemuBridgeErrorCode;

  constructor(code: QemuBridgeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The socket to QEMU's monitor could not be opened. */
export class QmpConnectError extends QemuBridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QMP_CONNECT_FAILED', message, options);
  }
}

/**
 * The session with QEMU ended. Every command still waiting for a reply fails
 * with this error; `reason` says why the session ended.
 */
export class QmpDisconnectedError extends QemuBridgeError {
  readonly reason: string;

  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super('QMP_DISCONNECTED', message, options);
    this.reason = reason;
  }
}

/** The peer sent something that is not QMP (bad JSON, a reply to no request). */
export class QmpProtocolError extends QemuBridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QMP_PROTOCOL_VIOLATION', message, options);
  }
}

/** A command's arguments (or a session's options) cannot be sent as QMP; nothing was sent. */
export class QmpArgumentError extends QemuBridgeError {
  constructor(message: string) {
    super('QMP_INVALID_ARGUMENTS', message);
  }
}

/** Descriptors could not be passed to QEMU with a command; the command was not sent. */
export class QmpFdPassingError extends QemuBridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QMP_FD_PASSING_FAILED', message, options);
  }
}

/** A command got no reply in time. QEMU may still execute it. */
export class QmpTimeoutError extends QemuBridgeError {
  readonly command: string;
  readonly timeoutMs: number;

  constructor(command: string, timeoutMs: number, message: string) {
    super('QMP_TIMEOUT', message);
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends QemuBridgeError {
  readonly command: string;
  /** QEMU's error class: GenericError, CommandNotFound, DeviceNotFound, ... */
  readonly errorClass: string;
  /** QEMU's own description, verbatim. */
  readonly desc: string;

  constructor(command: string, errorClass: string, desc: string) {
    super('QMP_COMMAND_FAILED', `QEMU refused ${command}: ${desc} (${errorClass})`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** A QMP reply did not have the shape QEMU's schema promises. */
export class QmpReplyError extends QemuBridgeError {
  constructor(message: string) {
    super('QMP_BAD_REPLY', message);
  }
}

/** This QEMU lacks a device, property or command the request needs. */
export class QemuUnsupportedError extends QemuBridgeError {
  readonly missing: readonly string[];

  constructor(missing: readonly string[], message: string) {
    super('QEMU_UNSUPPORTED', message);
    this.missing = missing;
  }
}

/**
 * A cpr-transfer did not complete: the new QEMU did not come up, or the old
 * one's migration failed (it then runs the guest on).
 */
export class CprTransferError extends QemuBridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CPR_TRANSFER_FAILED', message, options);
  }
}

export type HotplugErrorCode = Extract<
  QemuBridgeErrorCode,
  | 'HOTPLUG_INVALID_REQUEST'
  | 'HOTPLUG_NO_FREE_SLOT'
  | 'HOTPLUG_FAILED'
  | 'HOTPLUG_NOT_VERIFIED'
  | 'UNPLUG_NOT_ACKNOWLEDGED'
  | 'UNPLUG_REJECTED_BY_GUEST'
>;

/** Attaching or detaching devices of a running VM did not complete. */
export class HotplugError extends QemuBridgeError {
  /** Device ids still present in QEMU after the failure. */
  readonly remaining: readonly string[];

  constructor(
    code: HotplugErrorCode,
    message: string,
    remaining: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.remaining = remaining;
  }
}

/** A VmDescription cannot be turned into a QEMU command line. */
export class VmDescriptionError extends QemuBridgeError {
  constructor(message: string) {
    super('VM_DESCRIPTION_INVALID', message);
  }
}

/** The running machine's RAM layout cannot be derived exactly. */
export class MemoryLayoutError extends QemuBridgeError {
  constructor(message: string) {
    super('MEMORY_LAYOUT_UNSUPPORTED', message);
  }
}

/** QEMU exited or never opened its monitor while being started. */
export class QemuLaunchError extends QemuBridgeError {
  /** What QEMU wrote on stderr before it failed. */
  readonly stderr: string;

  constructor(message: string, stderr: string, options?: { cause?: unknown }) {
    super('QEMU_LAUNCH_FAILED', message, options);
    this.stderr = stderr;
  }
}
