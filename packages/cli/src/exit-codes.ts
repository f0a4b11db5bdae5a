// The exit codes of `vfiokit`, one per way a run can end. Scripts branch on
// these, so a number keeps its meaning once published: add, never renumber.

export enum ExitCode {
  /** The command did what was asked. */
  Ok = 0,
  /** A bug in vfiokit: run again with --debug and report the stack trace. */
  Internal = 1,
  /** The command line itself is wrong: unknown command or option, missing argument. */
  Usage = 2,
  /** An input names something that does not exist: a device, a group, a file, a fixture. */
  NotFound = 3,
  /** An input is malformed: a PCI address, YAML, a guest spec field, a trace line. */
  InvalidInput = 4,
  /** vfiokit refused: a group is not viable, a safety rule applies, a plan cannot be satisfied, a check failed. */
  Refused = 5,
  /** The host did not do what was asked (sysfs write, VFIO ioctl); whatever was changed was rolled back. */
  HostFailure = 6,
  /** QEMU did not do what was asked: no answer on the QMP socket, a timeout, an error reply. */
  QemuFailure = 7,
  /** This machine lacks something the command needs (no IOMMU, no /dev/vfio, no QEMU) and nothing was changed. */
  Unavailable = 8,
}

/** One line per code, in order, for `vfiokit --help` and the README. */
export const EXIT_CODE_DESCRIPTIONS: readonly (readonly [ExitCode, string])[] = [
  [ExitCode.Ok, 'success'],
  [ExitCode.Internal, 'internal error (a bug: rerun with --debug and report it)'],
  [ExitCode.Usage, 'bad command line (unknown command or option, missing argument)'],
  [ExitCode.NotFound, 'not found (device, group, file, fixture)'],
  [ExitCode.InvalidInput, 'invalid input (malformed address, YAML, guest spec, trace)'],
  [ExitCode.Refused, 'refused (not viable, safety rule, unsatisfiable plan, failed check)'],
  [ExitCode.HostFailure, 'host operation failed (sysfs or VFIO); changes were rolled back'],
  [ExitCode.QemuFailure, 'QEMU/QMP failed (no answer, timeout, error reply)'],
  [ExitCode.Unavailable, 'unavailable on this machine (no IOMMU, no /dev/vfio, no QEMU)'],
];

export function exitCodesHelp(): string {
  return [
    ...EXIT_CODE_DESCRIPTIONS.map(([code, text]) => `  ${String(code).padStart(2)}  ${text}`),
    '  128+N  stopped by signal N once its work was undone (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)',
  ].join('\n');
}
