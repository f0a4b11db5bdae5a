// What a QEMU binary is, asked the way a person would: `BINARY --version`
// prints "QEMU emulator version 10.0.2 (Debian ...)" (softmmu/vl.c,
// version()). One parser serves the planner (major.minor: iommufd came in
// 8.2) and the upgrade (cpr-transfer with VFIO came in 10.1).
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import type { VmmCapabilities } from '@vfiokit/core';
import { QemuUnsupportedError } from '../errors';

export interface QemuRelease {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
}

export function releaseText(v: QemuRelease): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}

export function atLeast(v: QemuRelease, min: QemuRelease): boolean {
  return v.major !== min.major ? v.major > min.major : v.minor !== min.minor ? v.minor > min.minor : v.micro >= min.micro;
}

/** Parses `--version` output; undefined when it names no version. */
export function parseQemuRelease(text: string): QemuRelease | undefined {
  const m = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return m ? { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0) } : undefined;
}

/** major.minor of `--version` output, as the planner's capabilities carry it. */
export function parseQemuVersion(text: string): string | undefined {
  const r = parseQemuRelease(text);
  return r ? `${r.major}.${r.minor}` : undefined;
}

/**
 * `binary --version`, at most 60 s: in a TCG lab guest on a loaded host
 * QEMU's start alone has taken over 10 s.
 */
function askVersion(binary: string): { run: SpawnSyncReturns<string>; release?: QemuRelease } {
  const run = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  const release = run.status === 0 ? parseQemuRelease(run.stdout ?? '') : undefined;
  return release ? { run, release } : { run };
}

/** Why `binary --version` gave no version, in words. */
function whyNoVersion(binary: string, run: SpawnSyncReturns<string>): string {
  if (run.error) {
    const code = (run.error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${binary} is not installed or not on PATH` : `${run.error.message}${run.signal ? ` (${run.signal})` : ''}`;
  }
  const last = run.stderr ? `: ${String(run.stderr).trim().split('\n').pop()}` : '';
  return run.status === 0 ? `exit 0, no "QEMU emulator version" in its output` : `exit ${run.status}${last}`;
}

/** Reports `binary`'s version or why there is none, for planning. */
export function probeQemuVersion(binary: string): VmmCapabilities {
  const probedWith = `${binary} --version`;
  const { run, release } = askVersion(binary);
  return release ? { probedWith, qemuVersion: `${release.major}.${release.minor}` } : { probedWith, probeError: whyNoVersion(binary, run) };
}

/** The release `binary` reports, or a QemuUnsupportedError saying why it cannot be told. */
export function qemuReleaseOf(binary: string): QemuRelease {
  const { run, release } = askVersion(binary);
  if (release) return release;
  throw new QemuUnsupportedError(['--version'], `cannot tell which QEMU ${binary} is: '${binary} --version' gave ${whyNoVersion(binary, run)}`);
}
