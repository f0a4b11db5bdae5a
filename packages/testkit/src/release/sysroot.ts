// Debian's own Node.js for another architecture, unpacked into a folder that
// qemu-user takes as the target's root (`qemu-aarch64 -L DIR`): the nodejs
// package and the closure of its dependencies (glibc, libstdc++, libuv,
// OpenSSL, ICU...), downloaded through a private apt for that architecture
// (../lab/debian.ts; the machine's own apt and dpkg are untouched) and kept
// in the cache, so a second run downloads nothing.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fetchPackage, privateApt, requireTool, type PrivateApt } from '../lab/debian';

/**
 * Where the release check keeps Debian's packages and the unpacked Node
 * roots: ${VFIOKIT_CACHE:-~/.cache/vfiokit}/release. The arm64 lab boots
 * the same arm64 root, so the two never fetch it twice.
 */
export function releaseCacheDir(): string {
  const dir = join(process.env.VFIOKIT_CACHE || join(homedir(), '.cache', 'vfiokit'), 'release');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * The names in `apt-cache depends --recurse` output: one package a line,
 * its dependency lines indented below it; `<virtual>` names are provided by
 * a real package that is listed as well.
 */
export function dependencyClosure(aptCacheOutput: string): string[] {
  return [
    ...new Set(
      aptCacheOutput
        .split('\n')
        .filter((line) => line.length > 0 && !/^\s/.test(line) && !line.startsWith('<'))
        .map((line) => line.trim()),
    ),
  ].sort();
}

function aptCache(apt: PrivateApt, args: readonly string[]): string {
  const r = spawnSync('apt-cache', [...apt.options, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`apt-cache ${args.join(' ')} (${apt.arch}) failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `name:arch` as apt-get download wants it: architecture-independent packages are `:all`. */
function downloadSpec(apt: PrivateApt, name: string): string {
  const arch = /^Architecture: (\S+)$/m.exec(aptCache(apt, ['show', '--no-all-versions', name]))?.[1];
  return `${name}:${arch === 'all' ? 'all' : apt.arch}`;
}

/**
 * A root folder holding Debian's nodejs for `debianArch` and everything it
 * needs; `<root>/usr/bin/node` is the program to run under qemu-user.
 */
export function debianNodeRoot(cacheDir: string, debianArch: string, log: (m: string) => void): string {
  requireTool('apt-cache', 'apt');
  const aptDir = join(cacheDir, `apt-${debianArch}`);
  const apt = privateApt(aptDir, debianArch, log);
  // Resolving the closure asks apt-cache once per package (about 40 runs,
  // three minutes on a loaded 2-core machine); the same package indexes
  // resolve to the same root, so the answer is kept beside the roots.
  const memo = join(cacheDir, 'roots', `node-${debianArch}.json`);
  const lists = aptListsKey(aptDir);
  try {
    const kept = JSON.parse(readFileSync(memo, 'utf8')) as { lists?: string; root?: string };
    if (kept.lists === lists && kept.root !== undefined && existsSync(kept.root)) return kept.root;
  } catch {
    // none yet, or unreadable: resolve
  }
  const root = resolveNodeRoot(cacheDir, apt, debianArch, log);
  // Other clones share the cache: write whole, then rename.
  writeFileSync(`${memo}.${process.pid}`, `${JSON.stringify({ lists, root })}\n`);
  renameSync(`${memo}.${process.pid}`, memo);
  return root;
}

/** The private apt's package indexes as a key: names, sizes and times (apt-get update rewrites them). */
export function aptListsKey(aptDir: string): string {
  const dir = join(aptDir, 'lists');
  const indexes = readdirSync(dir)
    .filter((f) => f.includes('_Packages'))
    .sort()
    .map((f) => {
      const st = statSync(join(dir, f));
      return `${f} ${st.size} ${st.mtimeMs}`;
    });
  return hash(indexes.join('\n'));
}

function resolveNodeRoot(cacheDir: string, apt: PrivateApt, debianArch: string, log: (m: string) => void): string {
  const names = dependencyClosure(
    aptCache(apt, ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', 'nodejs']),
  );
  if (!names.includes('nodejs')) throw new Error(`the private apt for ${debianArch} does not list nodejs`);
  const unpacked = names.map((name) => fetchPackage(cacheDir, downloadSpec(apt, name), apt));
  // Named after the exact package files, so a new Debian point release makes a new root.
  const key = unpacked.map((u) => u.root.split('/').at(-1)).join('\n');
  const root = join(cacheDir, 'roots', `node-${debianArch}-${hash(key)}`);
  if (!existsSync(root)) {
    const partial = `${root}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    for (const u of unpacked) cpSync(u.root, partial, { recursive: true, verbatimSymlinks: true });
    relativizeLinks(partial, partial);
    renameSync(partial, root);
    log(`${debianArch}: Debian's nodejs and ${names.length - 1} packages it needs unpacked in ${root}`);
  }
  return root;
}

/**
 * Makes every absolute symlink under `dir` relative to `root`. qemu-user
 * looks for the program interpreter under its -L root, but the host kernel
 * follows the link: ppc64el's /lib64/ld64.so.2 -> /lib/powerpc64le-linux-gnu/
 * ld64.so.2 would lead out of the root, to a file this machine lacks.
 */
function relativizeLinks(root: string, dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const at = join(dir, entry.name);
    if (entry.isSymbolicLink()) {
      const target = readlinkSync(at);
      if (target.startsWith('/')) {
        rmSync(at);
        symlinkSync(relative(dirname(at), join(root, target)) || '.', at);
      }
    } else if (entry.isDirectory()) {
      relativizeLinks(root, at);
    }
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
