// Builds vfio-core's addon for one target triple into the folder of its npm
// package (crates/vfio-core/npm/<platform>/vfio-core.<platform>.node), with
// napi-rs's CLI and, for aarch64 and ppc64le, Debian's gcc cross toolchains
// as linkers (.cargo/config.toml names them).
//
// The C runtime: .cargo/config.toml links the lab's vfio-lab for the arm64
// and pseries guests with +crt-static (a static executable needs no libc in
// the guest). A napi addon is a shared library that Node dlopen()s, and
// rustc cannot make a cdylib with a static glibc: under +crt-static it
// drops the cdylib ("dropping unsupported crate type `cdylib`") and builds
// no .node at all. So these builds set RUSTFLAGS, which cargo takes instead
// of the config's target rustflags, to -crt-static: the addon links the
// target's glibc dynamically (libc6-dev-<arch>-cross provides it to link
// against). strip=symbols drops the symbol table a user has no use for
// (about a third of the file; the dynamic symbols Node needs stay). Their own
// target folder (target/npm) keeps the lab's static builds and `pnpm build`
// from rebuilding each other's dependencies.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { requireTool } from '../lab/debian';
import type { Target } from './targets';

/** What the release builds give rustc; see the file's comment. */
export const RELEASE_RUSTFLAGS = '-C target-feature=-crt-static -C strip=symbols';

/** The folder of the npm package that holds `target`'s binary. */
export function binaryPackageDir(repoRoot: string, target: Target): string {
  return join(repoRoot, 'crates', 'vfio-core', 'npm', target.platform);
}

export function addonFile(repoRoot: string, target: Target): string {
  return join(binaryPackageDir(repoRoot, target), `vfio-core.${target.platform}.node`);
}

/**
 * Builds the stripped release addon for `target` and returns its path;
 * throws with cargo's last lines when the build fails.
 */
export function buildAddon(repoRoot: string, target: Target, log: (m: string) => void): string {
  const crate = join(repoRoot, 'crates', 'vfio-core');
  if (target.crossGcc !== undefined) requireTool(target.crossGcc, target.crossPackages.join(' '));
  const installed = spawnSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' });
  if (installed.status === 0 && !installed.stdout.split('\n').includes(target.triple)) {
    throw new Error(`Rust's ${target.triple} target is not installed: rustup target add ${target.triple} (scripts/install.sh does it)`);
  }
  const targetDir = join(repoRoot, 'target', 'npm');
  const outDir = binaryPackageDir(repoRoot, target);
  const napi = join(crate, 'node_modules', '.bin', 'napi');
  // The declarations are the same for every target; the one the package
  // ships comes from `pnpm build`, so this build writes its copy out of the way.
  const dts = relative(outDir, join(targetDir, 'index.d.ts'));
  const args = ['build', '--platform', '--release', '--features', 'napi', '--no-js', '--target', target.triple, '--target-dir', targetDir, '--output-dir', outDir, '--dts', dts];
  log(`${target.triple}: napi ${args.join(' ')} (RUSTFLAGS=${RELEASE_RUSTFLAGS})`);
  const r = spawnSync(napi, args, { cwd: crate, env: { ...process.env, RUSTFLAGS: RELEASE_RUSTFLAGS }, encoding: 'utf8', maxBuffer: 64 << 20 });
  const file = addonFile(repoRoot, target);
  if (r.status !== 0 || !existsSync(file)) {
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-6).join(' / ');
    throw new Error(`napi build --target ${target.triple} ${r.status !== 0 ? `exited with ${r.status ?? r.signal}` : `wrote no ${file}`}: ${tail}`);
  }
  return file;
}
