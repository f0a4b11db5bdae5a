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

/** A CLI run in progress: wait for a line on stderr, signal it, see how it ended. */
export interface StartedCli {
  readonly pid: number;
  readonly child: import('node:child_process').ChildProcess;
  /** Resolves once stderr has shown `text` (rejects if the run ends first). */
  waitForStderr(text: string): Promise<void>;
  /** Resolves with stdout so far once it matches `pattern` (rejects if the run ends first). */
  waitForStdout(pattern: RegExp): Promise<RegExpExecArray>;
  /** How it ended: the exit code, or the signal that killed it. */
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Start the built binary without waiting for it (for tests that interrupt a run). */
export function startVfiokit(args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): StartedCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: PACKAGE_DIR,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: HANG_GUARD_MS,
  });
  let stdout = '';
  let stderr = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const outWaiters: { pattern: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const w of [...outWaiters]) {
      const m = w.pattern.exec(stdout);
      if (m) {
        outWaiters.splice(outWaiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    for (const w of waiters.filter((x) => stderr.includes(x.text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return {
    pid: child.pid!,
    child,
    ended,
    waitForStdout(pattern) {
      const m = pattern.exec(stdout);
      if (m) return Promise.resolve(m);
      return Promise.race([
        new Promise<RegExpExecArray>((resolve) => outWaiters.push({ pattern, resolve })),
        ended.then((r) => Promise.reject(new Error(`the run ended (${r.code ?? r.signal}) before stdout matched ${pattern}:\n${r.stderr}\nstdout:\n${r.stdout}`))),
      ]);
    },
    waitForStderr(text) {
      if (stderr.includes(text)) return Promise.resolve();
      return Promise.race([
        new Promise<void>((resolve) => waiters.push({ text, resolve })),
        ended.then((r) => Promise.reject(new Error(`the run ended (${r.code ?? r.signal}) before '${text}' on stderr:\n${r.stderr}\nstdout:\n${r.stdout}`))),
      ]);
    },
  };
}
