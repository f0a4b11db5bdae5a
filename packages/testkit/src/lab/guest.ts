// The guest side of the lab: runs every compiled `packages/*/dist/**/*.lab.js`
// (and `dist-test/`, where a package builds test code apart from what it ships)
// of the workspace, one case after another in this one node process (node
// takes seconds to start under TCG), and prints TAP on stdout.
//
//   node packages/testkit/dist/lab/guest.js [repoRoot] [suffix]
//
// `suffix` picks another kind of case file: `.iommufd-lab.js` are the cases
// that need the iommufd lab kernel (/dev/iommu, VFIO cdevs), run only by the
// iommufd profile; the default `.lab.js` never matches them.
// It also runs on a host (it finds and runs the same files), which is how the
// runner's own test checks it; the cases themselves expect the lab guest.

import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { formatTap } from './tap';
import { CaseReport } from './profile';

export interface LabCase {
  readonly name: string;
  /**
   * Throws to fail. May return what it measured (lines), which becomes the
   * passing case's detail: in cases.tap and, through the host runner's TAP,
   * in the lab log, where a comment printed by the case would not reach.
   */
  readonly run: () => undefined | string[] | Promise<undefined | string[]>;
  /** A case that starts several vfiokit processes (seconds each under TCG) may ask for more than the default. */
  readonly timeoutMs?: number;
}

const CASE_TIMEOUT_MS = 120_000;

/** Every `*.lab.js` (or `*<suffix>`) under `packages/<pkg>/dist` and `dist-test`, sorted so runs are repeatable. */
export function findLabFiles(repoRoot: string, suffix = '.lab.js'): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir).sort()) {
      if (entry === 'node_modules') continue;
      const full = join(dir, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (entry.endsWith(suffix)) found.push(full);
    }
  };
  const packages = join(repoRoot, 'packages');
  const isDir = (p: string): boolean => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  for (const pkg of readdirSync(packages).sort()) {
    // A package that builds its lab cases apart (tsconfig.lab.json) has them
    // in dist-test/ only; a dist/ of an older build may still hold copies
    // (turbo restores whole cached outputs), which must not run twice or stale.
    const own = join(packages, pkg, 'dist-test');
    const out = isDir(own) ? own : join(packages, pkg, 'dist');
    // a package that was not built has no lab cases to offer
    if (isDir(out)) walk(out);
  }
  return found;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function describe(err: unknown): string[] {
  if (err instanceof Error) return (err.stack ?? `${err.name}: ${err.message}`).split('\n').slice(0, 12);
  return [String(err)];
}

/** Runs every case of every file; a file that fails to load counts as one failed case. */
export async function runLabFiles(repoRoot: string, files: readonly string[], caseTimeoutMs = CASE_TIMEOUT_MS, only?: RegExp): Promise<CaseReport[]> {
  const reports: CaseReport[] = [];
  for (const file of files) {
    const label = relative(join(repoRoot, 'packages'), file).replace(/\/dist(-test)?\//, '/').replace(/\.(iommufd-)?lab\.js$/, '');
    let cases: unknown;
    try {
      cases = (require(file) as { cases?: unknown }).cases;
    } catch (err) {
      reports.push({ name: `${label}: loads`, ok: false, detail: describe(err) });
      continue;
    }
    if (!Array.isArray(cases)) {
      reports.push({ name: `${label}: exports cases`, ok: false, detail: ['the file must export `cases: { name, run }[]`'] });
      continue;
    }
    for (const c of cases as LabCase[]) {
      const name = `${label}: ${c.name}`;
      if (only !== undefined && !only.test(name)) continue;
      const started = Date.now();
      let verdict = 'ok';
      try {
        const measured = await withTimeout(Promise.resolve().then(() => c.run()), c.timeoutMs ?? caseTimeoutMs, `case '${c.name}'`);
        reports.push(Array.isArray(measured) && measured.length > 0 ? { name, ok: true, detail: measured.map(String) } : { name, ok: true });
      } catch (err) {
        reports.push({ name, ok: false, detail: describe(err) });
        verdict = `FAILED: ${describe(err)[0] ?? ''}`;
      }
      // The verdict on the console too: a guest killed as hung never writes cases.tap.
      process.stderr.write(`lab case ${name}: ${verdict}, ${Date.now() - started} ms\n`);
    }
  }
  return reports;
}

async function main(): Promise<void> {
  const repoRoot = resolve(process.argv[2] ?? join(__dirname, '..', '..', '..', '..'));
  // VFIOKIT_LAB_CASES (the runner passes it in): only the cases whose "file: name" it matches, while working on them.
  const only = process.env.VFIOKIT_LAB_CASES ? new RegExp(process.env.VFIOKIT_LAB_CASES) : undefined;
  const reports = await runLabFiles(repoRoot, findLabFiles(repoRoot, process.argv[3]), CASE_TIMEOUT_MS, only);
  process.stdout.write(formatTap(reports));
  process.exitCode = reports.some((r) => !r.ok && !r.skip) ? 1 : 0;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`lab guest runner failed: ${describe(err).join('\n')}\n`);
    process.exitCode = 2;
  });
}
