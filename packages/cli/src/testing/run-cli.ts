// Runs the built binary as a subprocess, the way a user or a script does.
// Tests depend on `tsc -b` having produced dist/main.js (turbo's test task
// builds first).
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';

export const PACKAGE_DIR = join(__dirname, '..', '..');
export const BIN = join(PACKAGE_DIR, 'dist', 'main.js');
export const EXAMPLES = join(PACKAGE_DIR, 'examples');

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A hang guard, not a speed check: generous enough that a run on a loaded
 * machine (2 cores, several builds at once) is never killed, and below ava's
 * 180 s test timeout so a real hang still fails with the run's own output.
 */
const HANG_GUARD_MS = 150_000;

/** `stdin`: a file whose contents the run reads on its standard input. */
export function vfiokit(args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: PACKAGE_DIR,
      env: { ...process.env, ...opts.env },
      stdio: [opts.stdin === undefined ? 'ignore' : openSync(opts.stdin, 'r'), 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? HANG_GUARD_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Parse stdout of a --json run, failing loudly with what was printed. */
export function parseJson<T = unknown>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${run.code}):\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
}
