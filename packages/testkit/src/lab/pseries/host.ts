// What the pseries profile needs from the host, got idempotently: Debian's
// bookworm-backports suite (the 6.12 ppc64el kernel lives there), the
// ppc64el architecture in dpkg (for busybox-static:ppc64el), the ppc64le
// cross linker, Rust's powerpc64le target, and the vfio-lab binary built for
// both sides. Changing apt's configuration needs root; without it the lab
// says exactly what to run.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newestPackage } from '../debian';
import { LabError } from '../errors';

export const RUST_TARGET = 'powerpc64le-unknown-linux-gnu';
const CROSS_GCC = 'powerpc64le-linux-gnu-gcc';
const CROSS_PACKAGES = ['gcc-powerpc64le-linux-gnu', 'libc6-dev-ppc64el-cross'];
const SOURCES_DIR = '/etc/apt/sources.list.d';
const BACKPORTS_FILE = join(SOURCES_DIR, 'vfiokit-bookworm-backports.sources');
/** The kernel package: Debian's 6.12 for 4 KiB pages, any ABI number. */
export const KERNEL_PATTERN = /^linux-image-6\.12\.\d+\+deb\d+-powerpc64le$/;

function run(cmd: string, args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.error ? null : r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function has(tool: string): boolean {
  return run('sh', ['-c', `command -v ${tool}`]).status === 0;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** Every apt source text on the machine (deb822 and one-line). */
function aptSourceTexts(): string[] {
  const texts: string[] = [];
  if (existsSync('/etc/apt/sources.list')) texts.push(readFileSync('/etc/apt/sources.list', 'utf8'));
  if (existsSync(SOURCES_DIR)) {
    for (const f of readdirSync(SOURCES_DIR)) {
      if (f.endsWith('.list') || f.endsWith('.sources')) texts.push(readFileSync(join(SOURCES_DIR, f), 'utf8'));
    }
  }
  return texts;
}

/**
 * The deb822 stanza for bookworm-backports, with the URI and key of the
 * machine's own bookworm entry (a mirror stays a mirror).
 */
export function backportsStanza(sources: readonly string[]): string | undefined {
  for (const text of sources) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string): string | undefined =>
        new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(stanza)?.[1]?.trim();
      const suites = field('Suites')?.split(/\s+/) ?? [];
      const uris = field('URIs');
      if (!suites.includes('bookworm') || uris === undefined || /security/.test(uris)) continue;
      const key = field('Signed-By');
      return ['Types: deb', `URIs: ${uris}`, 'Suites: bookworm-backports', 'Components: main', ...(key ? [`Signed-By: ${key}`] : []), ''].join('\n');
    }
    const line = /^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text);
    if (line) return ['Types: deb', `URIs: ${line[2]}`, 'Suites: bookworm-backports', 'Components: main', ''].join('\n');
  }
  return undefined;
}

function hasBackports(sources: readonly string[]): boolean {
  return sources.some((t) => /bookworm-backports/.test(t.replace(/^#.*$/gm, '')));
}

/**
 * Makes apt able to fetch the guest's packages and the host able to build
 * for the guest. Each step runs only when its result is missing.
 */
export function ensureHost(log: (m: string) => void): void {
  let update = false;
  const sources = aptSourceTexts();
  if (!hasBackports(sources)) {
    const stanza = backportsStanza(sources);
    if (!isRoot() || stanza === undefined) {
      throw new LabError(
        'MISSING_PACKAGE',
        `apt has no bookworm-backports source (the 6.12 ppc64el kernel comes from there); ${stanza === undefined ? 'add one for your Debian mirror' : `as root, write ${BACKPORTS_FILE} with:\n${stanza}`} and run 'apt-get update'`,
      );
    }
    log(`pseries: adding ${BACKPORTS_FILE}`);
    writeFileSync(BACKPORTS_FILE, stanza);
    update = true;
  }
  if (!run('dpkg', ['--print-foreign-architectures']).out.split(/\s+/).includes('ppc64el')) {
    if (!isRoot()) throw new LabError('MISSING_PACKAGE', "dpkg lacks the ppc64el architecture: run 'dpkg --add-architecture ppc64el && apt-get update' as root");
    log('pseries: dpkg --add-architecture ppc64el');
    run('dpkg', ['--add-architecture', 'ppc64el']);
    update = true;
  }
  if (!update && isRoot() && !kernelListed()) update = true;
  if (update && isRoot()) {
    log('pseries: apt-get update');
    // One ppc64el index of the security suite may fail to download; nothing
    // the lab needs comes from it, so the exit status is not the verdict:
    // the package lookups that follow are.
    const r = run('apt-get', ['update', '-qq']);
    if (r.status !== 0) log(`pseries: apt-get update reported problems (going on): ${r.out.split('\n').slice(-2).join(' / ')}`);
  }
  if (!has(CROSS_GCC)) {
    if (!isRoot()) throw new LabError('MISSING_TOOL', `the lab needs '${CROSS_GCC}' to link the guest's binary: apt-get install ${CROSS_PACKAGES.join(' ')}`);
    log(`pseries: apt-get install ${CROSS_PACKAGES.join(' ')}`);
    const r = spawnSync('apt-get', ['install', '-y', '-qq', ...CROSS_PACKAGES], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new LabError('MISSING_TOOL', `apt-get install ${CROSS_PACKAGES.join(' ')} failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}`);
  }
  const targets = run('rustup', ['target', 'list', '--installed']);
  if (targets.status !== 0) throw new LabError('MISSING_TOOL', `rustup is needed to add the ${RUST_TARGET} target: ${targets.out}`);
  if (!targets.out.split('\n').includes(RUST_TARGET)) {
    log(`pseries: rustup target add ${RUST_TARGET}`);
    const r = run('rustup', ['target', 'add', RUST_TARGET]);
    if (r.status !== 0) throw new LabError('MISSING_TOOL', `rustup target add ${RUST_TARGET} failed: ${r.out}`);
  }
}

function kernelListed(): boolean {
  try {
    newestPackage(KERNEL_PATTERN, 'linux-image-6.12');
    return true;
  } catch {
    return false;
  }
}

function cargoTargetDir(repoRoot: string): string {
  return process.env.CARGO_TARGET_DIR || join(repoRoot, 'target');
}

/**
 * Builds crates/vfio-lab for `target` (the guest: release, without the
 * workspace's LTO, which costs minutes on 2 cores and buys nothing for a
 * test binary) or for the host (the mock run: a debug build, sharing what
 * `cargo test` already compiled), and returns the executable's path. Cargo
 * decides what is stale.
 */
export function buildLab(repoRoot: string, target: string | undefined, log: (m: string) => void): string {
  const args = target
    ? ['build', '--release', '--config', 'profile.release.lto=false', '--quiet', '-p', 'vfio-lab', '--target', target]
    : ['build', '--quiet', '-p', 'vfio-lab'];
  log(`pseries: cargo ${args.join(' ')}`);
  const r = spawnSync('cargo', args, { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    throw new LabError('MISSING_TOOL', `cargo ${args.join(' ')} failed:\n${(r.stderr ?? r.error?.message ?? '').trim().split('\n').slice(-15).join('\n')}`);
  }
  return join(cargoTargetDir(repoRoot), ...(target ? [target, 'release'] : ['debug']), 'vfio-lab');
}
