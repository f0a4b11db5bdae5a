// What the arm64 profile needs from the host to build its guest binary: the
// aarch64 cross linker (Debian's gcc-aarch64-linux-gnu, named by
// .cargo/config.toml) and Rust's aarch64-unknown-linux-gnu target. The
// guest's Debian packages come through a private apt (../debian.ts), so no
// dpkg architecture is added to the machine.

import { spawnSync } from 'node:child_process';
import { LabError } from '../errors';

export const RUST_TARGET = 'aarch64-unknown-linux-gnu';
const CROSS_GCC = 'aarch64-linux-gnu-gcc';
const CROSS_PACKAGES = ['gcc-aarch64-linux-gnu', 'libc6-dev-arm64-cross'];

function run(cmd: string, args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return { status: r.error ? null : r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Installs what is missing (as root), or says exactly what to run. */
export function ensureCrossBuild(log: (m: string) => void): void {
  if (run('sh', ['-c', `command -v ${CROSS_GCC}`]).status !== 0) {
    if (process.getuid?.() !== 0) {
      throw new LabError('MISSING_TOOL', `the lab needs '${CROSS_GCC}' to link the arm64 guest's binary: apt-get install ${CROSS_PACKAGES.join(' ')}`);
    }
    log(`arm64: apt-get install ${CROSS_PACKAGES.join(' ')}`);
    const r = run('apt-get', ['install', '-y', '-qq', ...CROSS_PACKAGES]);
    if (r.status !== 0) throw new LabError('MISSING_TOOL', `apt-get install ${CROSS_PACKAGES.join(' ')} failed: ${r.out.split('\n').slice(-3).join(' / ')}`);
  }
  const targets = run('rustup', ['target', 'list', '--installed']);
  if (targets.status !== 0) throw new LabError('MISSING_TOOL', `rustup is needed to add the ${RUST_TARGET} target: ${targets.out}`);
  if (!targets.out.split('\n').includes(RUST_TARGET)) {
    log(`arm64: rustup target add ${RUST_TARGET}`);
    const r = run('rustup', ['target', 'add', RUST_TARGET]);
    if (r.status !== 0) throw new LabError('MISSING_TOOL', `rustup target add ${RUST_TARGET} failed: ${r.out}`);
  }
}
