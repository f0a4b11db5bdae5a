// What a QEMU binary is, asked the way a person would: `BINARY --version`
// prints "QEMU emulator version 10.0.2 (Debian ...)" (softmmu/vl.c,
// version()). The planner needs only major.minor (iommufd came in 8.2).
import { spawnSync } from 'node:child_process';
import type { VmmCapabilities } from '@vfiokit/core';

/** Parses `--version` output; undefined when it names no version. */
export function parseQemuVersion(text: string): string | undefined {
  const m = /QEMU emulator version (\d+)\.(\d+)/.exec(text);
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/**
 * Runs `binary --version` and reports its version or why there is none. At
 * most 60 s: in a TCG lab guest on a loaded host QEMU's start alone has
 * taken over 10 s.
 */
export function probeQemuVersion(binary: string): VmmCapabilities {
  const probedWith = `${binary} --version`;
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { probedWith, probeError: code === 'ENOENT' ? `${binary} is not installed or not on PATH` : `${r.error.message}${r.signal ? ` (${r.signal})` : ''}` };
  }
  const version = parseQemuVersion(r.stdout ?? '');
  if (version === undefined) return { probedWith, probeError: `exit ${r.status}, no "QEMU emulator version" in its output` };
  return { probedWith, qemuVersion: version };
}
