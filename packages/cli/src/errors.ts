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
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** Errors from the layers below carry a stable `code`; this reads it without importing their classes. */
function layerCode(err: unknown): string | undefined {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Exit codes for the codes core and qemu-bridge give their errors. A code
 * not listed is a failure of the layer it came from; the prefix then decides.
 */
const EXIT_BY_CODE: Readonly<Record<string, ExitCode>> = {
  // Node's own, from fs and net.
  ENOENT: ExitCode.NotFound,
  EACCES: ExitCode.HostFailure,
  EPERM: ExitCode.HostFailure,
  ECONNREFUSED: ExitCode.QemuFailure,
  ETIMEDOUT: ExitCode.QemuFailure,
};

const EXIT_BY_PREFIX: readonly (readonly [string, ExitCode])[] = [
  ['QMP_', ExitCode.QemuFailure],
  ['QEMU_', ExitCode.QemuFailure],
];

export function exitCodeFor(code: string | undefined): ExitCode {
  if (code === undefined) return ExitCode.Internal;
  const exact = EXIT_BY_CODE[code];
  if (exact !== undefined) return exact;
  for (const [prefix, exit] of EXIT_BY_PREFIX) if (code.startsWith(prefix)) return exit;
  if (/(NOT_FOUND|UNKNOWN|NO_SUCH)/.test(code)) return ExitCode.NotFound;
  if (/(INVALID|MALFORMED|PARSE|BAD_)/.test(code)) return ExitCode.InvalidInput;
  if (/(NOT_VIABLE|UNSAFE|REFUSED|UNSATISFIABLE|INCOMPATIBLE|MEMLOCK|COLLISION)/.test(code)) return ExitCode.Refused;
  if (/(TIMEOUT|QMP)/.test(code)) return ExitCode.QemuFailure;
  if (/(NO_IOMMU|UNAVAILABLE|UNSUPPORTED)/.test(code)) return ExitCode.Unavailable;
  return ExitCode.HostFailure;
}

/** Turn anything thrown into a CliError: known layer errors keep their message and code. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  const code = layerCode(err);
  if (err instanceof Error && code !== undefined) {
    const hint = (err as { hint?: unknown }).hint;
    return new CliError(code, err.message, exitCodeFor(code), typeof hint === 'string' ? hint : undefined, {
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CliError('INTERNAL', `internal error: ${message}`, ExitCode.Internal, 'rerun with --debug and report the stack trace', {
    cause: err,
  });
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
