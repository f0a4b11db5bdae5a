// An install as a user does it: the packed tarballs into an empty project
// outside the clone, with plain npm and a PATH that has Node and npm but no
// pnpm, cargo or rustc, then the installed command and library at work.
//
// Registry-free for vfiokit's own packages: @vfiokit/* resolves only to the
// tarballs given, because the scope's registry is pointed at a closed local
// port; a lookup of anything else of the scope (the binary packages of the
// other triples, optional dependencies) fails at once and npm leaves that
// optional dependency out, as it does on a machine of another kind. The
// third-party dependencies (commander, zod, grpc...) come from the npm
// registry as for any user, through npm's cache in ~/.npm.

import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Nothing listens on port 9 (discard) of the loopback: every fetch is refused at once. */
export const CLOSED_REGISTRY = 'http://127.0.0.1:9/';

export interface UserProject {
  readonly dir: string;
  /** The environment of the user's shell: PATH is `bin` with node, npm, npx and sh only. */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * An empty npm project in `dir` and its user's environment: only HOME (npm's
 * cache) and a PATH holding links to node, npm, npx and sh (npm runs
 * install scripts with sh). Nothing of pnpm's environment passes through
 * (its npm_config_* variables would steer npm).
 */
export function userProject(dir: string): UserProject {
  const bin = join(dir, '.user-bin');
  mkdirSync(bin, { recursive: true });
  const which = (tool: string) => {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${tool} is not on PATH: the install check needs Node's npm`);
    return r.stdout.trim();
  };
  for (const tool of ['node', 'npm', 'npx', 'sh']) symlinkSync(which(tool), join(bin, tool));
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'vfiokit-user', version: '1.0.0', private: true }, null, 2)}\n`);
  return { dir, env: { PATH: bin, HOME: process.env.HOME ?? '/root', ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}) } };
}

export function run(project: UserProject, argv: readonly string[], timeoutMs = 300_000): SpawnSyncReturns<string> {
  return spawnSync(argv[0]!, argv.slice(1), { cwd: project.dir, env: project.env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
}

/** `npm install` of `tarballs`, as described in the file's comment. */
export function npmInstall(project: UserProject, tarballs: readonly string[]): SpawnSyncReturns<string> {
  return run(project, ['npm', 'install', '--no-audit', '--no-fund', '--loglevel=error', '--fetch-retries=0', `--@vfiokit:registry=${CLOSED_REGISTRY}`, ...tarballs]);
}

/** One line about a finished process, for a failed case's details. */
export function describeRun(r: SpawnSyncReturns<string>): string[] {
  const out = [`exit ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}`];
  for (const [name, text] of [['stdout', r.stdout], ['stderr', r.stderr]] as const) {
    const lines = (text ?? '').trim().split('\n').filter((l) => l !== '');
    if (lines.length > 0) out.push(`${name}: ${lines.slice(-8).join(' | ')}`);
  }
  return out;
}

/**
 * The library's first steps as core's README gives them, in the user's
 * project: a mock host, a type1v2 container, one batched map of real memory.
 */
export const MAP_SCRIPT = `const { VfioHost, HostMemory, packTriples } = require('@vfiokit/core');
const host = VfioHost.mock();
const container = host.openType1([1]);
const ram = new HostMemory(0x200000);
const report = container.mapBatch(packTriples([[0x100000n, ram.address, 0x200000n]]));
console.log(JSON.stringify({ entries: report.entries, ioctls: report.ioctls, bytes: String(report.bytes) }));
container.close();
`;

/** Loads @vfiokit/core and prints the loader's error fields when it throws. */
export const LOAD_SCRIPT = `try {
  require('@vfiokit/core');
  console.log(JSON.stringify({ loaded: true }));
} catch (err) {
  console.log(JSON.stringify({ name: err.name, code: err.code, triple: err.triple, packageName: err.packageName, message: err.message }));
}
`;
