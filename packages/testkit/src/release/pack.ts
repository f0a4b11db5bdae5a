// Packs every publishable package of the workspace as `pnpm publish` would
// (pnpm pack: workspace:* becomes the real version) and checks each tarball
// for what a user downloads: compiled code, declarations, README and
// LICENSE, the right manifest, and nothing else (no sources, tests, lab
// programs, benches, source maps).

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Manifest {
  readonly name: string;
  readonly version: string;
  readonly private?: boolean;
  readonly license?: string;
  readonly main?: string;
  readonly bin?: Record<string, string>;
  readonly engines?: Record<string, string>;
  readonly os?: readonly string[];
  readonly cpu?: readonly string[];
  readonly libc?: readonly string[];
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
}

export interface PackageDir {
  readonly dir: string;
  readonly manifest: Manifest;
}

/** The workspace's packages that are not private (pnpm-workspace.yaml's folders). */
export function publishablePackages(repoRoot: string): PackageDir[] {
  const parents = [join(repoRoot, 'crates'), join(repoRoot, 'crates', 'vfio-core', 'npm'), join(repoRoot, 'packages')];
  const out: PackageDir[] = [];
  for (const parent of parents) {
    for (const entry of readdirSync(parent, { withFileTypes: true })) {
      const file = join(parent, entry.name, 'package.json');
      if (!entry.isDirectory() || !existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
      if (manifest.private !== true) out.push({ dir: join(parent, entry.name), manifest });
    }
  }
  return out.sort((a, b) => a.manifest.name.localeCompare(b.manifest.name));
}

/** Runs pnpm pack in `pkg.dir` into `dest`; returns the tarball's path. */
export function packPackage(pkg: PackageDir, dest: string): string {
  const r = spawnSync('pnpm', ['pack', '--pack-destination', dest], { cwd: pkg.dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pnpm pack in ${pkg.dir} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
  const file = join(dest, `${pkg.manifest.name.replace(/^@/, '').replace('/', '-')}-${pkg.manifest.version}.tgz`);
  if (!existsSync(file)) throw new Error(`pnpm pack in ${pkg.dir} wrote no ${file}`);
  return file;
}

export interface TarEntry {
  readonly path: string;
  readonly size: number;
}

/** The files in a tarball with their sizes (`tar -tzvf`), paths without the `package/` prefix kept. */
export function listTarball(file: string): TarEntry[] {
  const r = spawnSync('tar', ['-tzvf', file], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`tar -tzvf ${file} failed: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      // -rw-r--r-- 0/0   16724 1985-10-26 08:15 package/dist/build.js
      const m = /^\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.*)$/.exec(line);
      if (!m) throw new Error(`tar listing line not understood: ${line}`);
      return { path: m[2]!, size: Number(m[1]) };
    });
}

export function tarballManifest(file: string): Manifest {
  const r = spawnSync('tar', ['-xOzf', file, 'package/package.json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`no package/package.json in ${file}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Manifest;
}

/** Paths a user must not download: sources, tests, lab programs, benches, maps, test data. */
const UNWANTED: readonly [RegExp, string][] = [
  [/(?<!\.d)\.ts$/, 'a TypeScript source'],
  [/\.(map|tsbuildinfo)$/, 'a build by-product'],
  [/(^|\/)(src|tests?|testing|test-support|bench|lab|fixtures|kubelet-sim|scripts|node_modules|target)\//, 'a source, test, lab, bench or test-data folder'],
  [/\.(test|lab|test-support)\.[cm]?js$/, 'a test or lab program'],
  [/\.rs$|Cargo\.(toml|lock)$/, 'Rust source'],
];

/**
 * Every way the tarball of `expected` is not what a user should get;
 * `versions` is every workspace package's version by name.
 */
export function tarballProblems(entries: readonly TarEntry[], manifest: Manifest, expected: Manifest, versions: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const files = new Map(entries.map((e) => [e.path.replace(/^package\//, ''), e.size]));
  for (const e of entries) {
    if (!e.path.startsWith('package/')) problems.push(`${e.path} is outside package/`);
  }
  for (const path of files.keys()) {
    for (const [re, what] of UNWANTED) if (re.test(path)) problems.push(`${path} is ${what}`);
  }
  if (!(files.get('LICENSE')! > 0)) problems.push('no LICENSE text');
  if (!files.has('README.md')) problems.push('no README.md');
  if (manifest.name !== expected.name || manifest.version !== expected.version) problems.push(`manifest is ${manifest.name}@${manifest.version}, not ${expected.name}@${expected.version}`);
  if (manifest.private === true) problems.push('manifest is private');
  if (manifest.license !== 'MIT') problems.push(`license is ${manifest.license ?? 'missing'}, not MIT`);
  if (manifest.engines?.node === undefined) problems.push('no engines.node');
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'] as const) {
    for (const [dep, range] of Object.entries(manifest[field] ?? {})) {
      if (range.startsWith('workspace:')) problems.push(`${field}.${dep} is still ${range}`);
      if (dep === '@vfiokit/testkit') problems.push(`${field} has @vfiokit/testkit, which is private and for tests only`);
      const ours = versions.get(dep);
      if (ours !== undefined && range !== ours) problems.push(`${field}.${dep} is ${range}, not the workspace's ${ours}`);
    }
  }
  if (manifest.main !== undefined && !files.has(manifest.main.replace(/^\.\//, ''))) problems.push(`main ${manifest.main} is not in the tarball`);
  for (const [name, bin] of Object.entries(manifest.bin ?? {})) {
    if (!files.has(bin.replace(/^\.\//, ''))) problems.push(`bin ${name} (${bin}) is not in the tarball`);
  }
  return problems;
}

/** `1234567` -> `1.2 MB`, as npm prints sizes (powers of 1000). */
export function humanSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
