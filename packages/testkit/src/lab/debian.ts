// Debian packages as the lab's source of kernels and busybox: downloaded with
// `apt-get download` (no install, no root needed for the download itself) and
// unpacked with `dpkg-deb -x` into the cache, so a second run costs nothing.

import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LabError } from './errors';

/** Throws MISSING_TOOL naming the Debian package that provides `tool`. */
export function requireTool(tool: string, debianPackage: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  if (found.status !== 0) {
    throw new LabError(
      'MISSING_TOOL',
      `the lab needs '${tool}', which is not installed; install it with 'apt-get install ${debianPackage}' (scripts/install.sh does this when run as root)`,
    );
  }
}

/**
 * Compares Debian package names by their numeric parts, so that
 * linux-image-6.1.0-10-amd64 sorts after linux-image-6.1.0-9-amd64.
 */
export function compareVersionedNames(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const na = Number(pa[i]);
    const nb = Number(pb[i]);
    if (i % 2 === 1 && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
    return pa[i]! < pb[i]! ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * The newest package whose whole name matches `pattern` among what
 * `apt-cache search --names-only` lists. The ABI number in kernel package
 * names moves with every security update, so the lab never hard-codes one.
 */
export function newestPackage(pattern: RegExp, searchTerm: string, apt?: PrivateApt): string {
  requireTool('apt-cache', 'apt');
  const out = spawnSync('apt-cache', [...(apt?.options ?? []), 'search', '--names-only', searchTerm], { encoding: 'utf8' });
  const names = out.stdout
    .split('\n')
    .map((line) => line.split(' - ')[0]!.trim())
    .filter((name) => pattern.test(name))
    .sort(compareVersionedNames);
  const newest = names.at(-1);
  if (newest === undefined) {
    throw new LabError(
      'MISSING_PACKAGE',
      `no Debian package matching ${pattern} is listed by 'apt-cache search ${searchTerm}'; run 'apt-get update' (as root), or name one in the environment`,
    );
  }
  return newest;
}

/**
 * Runs `fetch`, and when a package cannot be found or downloaded, refreshes
 * apt's lists once (as root) and tries again: a machine's lists may predate
 * the archive's current kernel ABI, whose old packages are then gone.
 */
export function withAptRefresh<T>(fetch: () => T, log: (m: string) => void): T {
  try {
    return fetch();
  } catch (err) {
    if (!(err instanceof LabError) || err.code !== 'MISSING_PACKAGE' || process.getuid?.() !== 0) throw err;
    log(`${err.message}; running 'apt-get update' and trying again`);
    const res = spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8' });
    if (res.status !== 0) log(`apt-get update failed: ${res.stderr.trim()}`);
    return fetch();
  }
}

export interface UnpackedPackage {
  /** `name` or `name:arch`, as asked. */
  readonly spec: string;
  /** The folder `dpkg-deb -x` unpacked into. */
  readonly root: string;
}

/**
 * Downloads `spec` (`name` or `name:arch`, or a path to a .deb) into
 * `cacheDir/debs` and unpacks it into `cacheDir/pkgs/<name>`. Both steps are
 * skipped when their result is already there; a half-done unpack is never
 * mistaken for a done one (it lands under a temporary name first).
 */
export function fetchPackage(cacheDir: string, spec: string, apt?: PrivateApt): UnpackedPackage {
  requireTool('dpkg-deb', 'dpkg');
  const debs = join(cacheDir, 'debs');
  const pkgs = join(cacheDir, 'pkgs');
  mkdirSync(debs, { recursive: true });
  mkdirSync(pkgs, { recursive: true });

  const deb = spec.endsWith('.deb') ? spec : downloadDeb(debs, spec, apt);
  const root = join(pkgs, deb.split('/').at(-1)!.replace(/\.deb$/, ''));
  if (!existsSync(root)) {
    const partial = `${root}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial);
    const res = spawnSync('dpkg-deb', ['-x', deb, partial], { encoding: 'utf8' });
    if (res.status !== 0) {
      throw new LabError('BAD_PACKAGE', `'dpkg-deb -x ${deb}' failed: ${res.stderr.trim()}`);
    }
    renameSync(partial, root);
  }
  return { spec, root };
}

function downloadDeb(debs: string, spec: string, apt?: PrivateApt): string {
  const [name, foreign] = spec.split(':');
  const arch = foreign ?? apt?.arch ?? hostArch();
  const prefix = `${name}_`;
  // The architecture is part of the match: the cache may hold the same
  // package for another architecture (busybox-static for the pseries guest).
  const suffix = `_${arch}.deb`;
  const cached = readdirSync(debs).find((f) => f.startsWith(prefix) && f.endsWith(suffix));
  if (cached !== undefined) return join(debs, cached);

  requireTool('apt-get', 'apt');
  const res = spawnSync('apt-get', [...(apt?.options ?? []), 'download', '-q', spec], { cwd: debs, encoding: 'utf8' });
  const got = readdirSync(debs).find((f) => f.startsWith(prefix) && f.endsWith(suffix));
  if (res.status !== 0 || got === undefined) {
    const hint = apt === undefined && foreign !== undefined && arch !== hostArch() ? ` (a foreign architecture needs 'dpkg --add-architecture ${arch}' and 'apt-get update' first)` : '';
    throw new LabError(
      'MISSING_PACKAGE',
      `'apt-get download ${spec}' failed${hint}: ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' / ')}`,
    );
  }
  return join(debs, got);
}

function hostArch(): string {
  try {
    return execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  } catch {
    return 'amd64';
  }
}

/**
 * An apt configuration of the lab's own, for another architecture: the
 * machine's Debian sources copied into `dir`, with apt's lists and cache
 * there too, so `apt-get update` / `download` for that architecture leave
 * the machine's own apt configuration, lists and dpkg untouched.
 */
export interface PrivateApt {
  readonly arch: string;
  /** `-o` options every apt call takes. */
  readonly options: readonly string[];
}

const MACHINE_SOURCES = '/etc/apt/sources.list.d/debian.sources';

/** The `-o` options for a private apt in `dir` serving `arch` (no I/O). */
export function privateAptOptions(dir: string, arch: string): string[] {
  const o = (kv: string): string[] => ['-o', kv];
  return [
    ...o('Dir::Etc::SourceList=/dev/null'),
    ...o(`Dir::Etc::SourceParts=${join(dir, 'sources')}`),
    ...o(`Dir::State::Lists=${join(dir, 'lists')}`),
    ...o(`Dir::Cache=${join(dir, 'cache')}`),
    // Only this architecture, and no installed-package state: nothing here
    // is installed, only downloaded.
    ...o(`APT::Architecture=${arch}`),
    ...o(`APT::Architectures::=${arch}`),
    ...o('Dir::State::status=/dev/null'),
    // apt drops to the _apt user for downloads, which cannot write into a
    // root-owned private folder; run as root, download as root.
    ...(process.getuid?.() === 0 ? o('APT::Sandbox::User=root') : []),
  ];
}

/**
 * Makes `dir` a private apt for `arch` and refreshes its lists when they
 * are missing (or `refresh`). The sources are the machine's own Debian
 * sources (a mirror stays a mirror).
 */
export function privateApt(dir: string, arch: string, log: (m: string) => void, refresh = false): PrivateApt {
  const sources = join(dir, 'sources');
  for (const d of [sources, join(dir, 'lists', 'partial'), join(dir, 'cache', 'archives', 'partial')]) mkdirSync(d, { recursive: true });
  if (!existsSync(join(sources, 'debian.sources'))) {
    if (!existsSync(MACHINE_SOURCES)) {
      throw new LabError('MISSING_PACKAGE', `no ${MACHINE_SOURCES} to copy into the lab's private apt for ${arch} (${dir}); put a deb822 Debian source there`);
    }
    copyFileSync(MACHINE_SOURCES, join(sources, 'debian.sources'));
  }
  const apt = { arch, options: privateAptOptions(dir, arch) };
  const listed = readdirSync(join(dir, 'lists')).some((f) => f.endsWith(`binary-${arch}_Packages`) || f.includes(`binary-${arch}_Packages.`));
  if (!listed || refresh) {
    log(`private apt for ${arch}: apt-get update (${dir})`);
    const r = spawnSync('apt-get', [...apt.options, 'update', '-qq'], { encoding: 'utf8' });
    if (r.status !== 0) log(`private apt for ${arch}: apt-get update reported problems (going on): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' / ')}`);
  }
  return apt;
}
