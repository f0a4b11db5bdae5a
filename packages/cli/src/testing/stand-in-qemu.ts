// A stand-in for the QEMU a simulated host's guest is planned for: the
// planned command line without the vfio-pci devices (their host devices are
// not on this machine, so QEMU would refuse them), under TCG, run by the
// real `binary`. Everything else of the command line, -machine and memory
// backends included, is what vfiokit gave.
import { chmodSync, writeFileSync } from 'node:fs';

export function writeStandInQemu(path: string, binary = 'qemu-system-x86_64'): string {
  writeFileSync(
    path,
    [
      '#!/bin/bash',
      "# The planned QEMU without the simulated host's vfio-pci devices (this machine has none of them), under TCG.",
      'args=()',
      'while [ $# -gt 0 ]; do',
      '  if [ "$1" = -device ] && [[ "$2" == vfio-pci,* ]]; then shift 2; continue; fi',
      '  if [ "$1" = -accel ]; then args+=(-accel tcg); shift 2; continue; fi',
      '  args+=("$1"); shift',
      'done',
      `exec ${binary} "\${args[@]}"`,
      '',
    ].join('\n'),
  );
  chmodSync(path, 0o755);
  return path;
}
