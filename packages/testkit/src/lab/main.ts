// `pnpm lab [profile...]`: runs the lab's profiles one after another and
// prints one TAP stream for all of them. Exits 1 when any case failed or any
// profile could not run (a missing package, a hung guest): the lab never
// passes by not running.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LabError } from './errors';
import { CaseReport, LabContext, LabProfile } from './profile';
import { formatTap } from './tap';
import { arm64Profile } from './arm64/index';
import { benchProfile } from './bench/index';
import { iommufdProfile } from './iommufd/index';
import { pseriesProfile } from './pseries/index';
import { x86Profiles } from './x86/index';

/** Every profile, in the order `pnpm lab` runs them without arguments. */
export const PROFILES: readonly LabProfile[] = [...x86Profiles, pseriesProfile, arm64Profile, iommufdProfile];

/** Profiles that run only when named (`pnpm lab bench`): figures to read, minutes long, not tests for CI. */
export const NAMED_ONLY: readonly LabProfile[] = [benchProfile];

function findRepoRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = resolve(dir, '..');
    if (up === dir) throw new Error(`no pnpm-workspace.yaml above ${from}: run the lab from inside the vfiokit repository`);
    dir = up;
  }
  return dir;
}

/**
 * Takes `lab-results/.lock` for this process. Two runs in one work tree
 * would empty each other's output folders mid-run; the second is refused
 * with the first's pid. A lock left by a process that is gone is taken over.
 */
export function takeLock(resultsDir: string): (() => void) | string {
  mkdirSync(resultsDir, { recursive: true });
  const lock = join(resultsDir, '.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      return () => rmSync(lock, { force: true });
    } catch {
      const holder = Number(readFileSync(lock, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
        return `another 'pnpm lab' (pid ${holder}) is running in this work tree; wait for it to end (or remove ${lock} if that pid is not a lab run)`;
      }
      rmSync(lock, { force: true });
    }
  }
  return `cannot take ${lock}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function log(message: string): void {
  process.stdout.write(`# ${message}\n`);
}

async function main(): Promise<number> {
  const repoRoot = findRepoRoot(__dirname);
  const names = process.argv.slice(2).filter((a) => a !== '--');
  const known = [...PROFILES, ...NAMED_ONLY];
  const unknown = names.filter((n) => !known.some((p) => p.name === n));
  if (unknown.length > 0) {
    process.stderr.write(`lab: unknown profile ${unknown.join(', ')}; the profiles are: ${known.map((p) => p.name).join(', ')}\n`);
    return 2;
  }
  const chosen = names.length > 0 ? known.filter((p) => names.includes(p.name)) : PROFILES;
  const timeoutSeconds = Number(process.env.VFIOKIT_LAB_TIMEOUT ?? '900');
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) {
    process.stderr.write(`lab: VFIOKIT_LAB_TIMEOUT must be a positive number of seconds, not '${process.env.VFIOKIT_LAB_TIMEOUT}'\n`);
    return 2;
  }
  const cacheDir = resolve(process.env.VFIOKIT_LAB_CACHE || join(repoRoot, '.lab-cache'));
  const release = takeLock(join(repoRoot, 'lab-results'));
  if (typeof release === 'string') {
    process.stderr.write(`lab: ${release}\n`);
    return 2;
  }
  try {
    return await runProfiles(chosen, repoRoot, cacheDir, timeoutSeconds);
  } finally {
    release();
  }
}

async function runProfiles(chosen: readonly LabProfile[], repoRoot: string, cacheDir: string, timeoutSeconds: number): Promise<number> {
  const all: CaseReport[] = [];
  for (const profile of chosen) {
    const outDir = join(repoRoot, 'lab-results', profile.name);
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    mkdirSync(cacheDir, { recursive: true });
    const ctx: LabContext = {
      repoRoot,
      cacheDir,
      outDir,
      nodePath: process.execPath,
      guestTimeoutMs: timeoutSeconds * 1000,
      log,
    };
    log(`profile ${profile.name}: ${profile.description}`);
    const started = Date.now();
    try {
      const reports = await profile.run(ctx);
      if (reports.length === 0) {
        all.push({ name: `${profile.name}: runs at least one case`, ok: false, detail: ['the profile returned no cases'] });
      }
      all.push(...reports.map((r) => ({ ...r, name: `${profile.name}: ${r.name}` })));
    } catch (err) {
      const code = err instanceof LabError ? err.code : 'INTERNAL';
      const message = err instanceof Error ? err.message : String(err);
      all.push({ name: `${profile.name}: lab runs to the end`, ok: false, detail: [`${code}: ${message}`] });
    }
    log(`profile ${profile.name} took ${((Date.now() - started) / 1000).toFixed(1)} s; output in ${outDir}`);
  }
  process.stdout.write(formatTap(all));
  return all.some((r) => !r.ok && !r.skip) ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
