#!/usr/bin/env node
// The `vfiokit` binary: runs the command, and decides how a run that is
// stopped from outside ends (README, "Child processes and interruption").
//
// A signal (SIGINT, SIGTERM, SIGHUP) or a closed stdout aborts the run's
// AbortSignal: long loops see it between steps and undo what they did (map
// unmaps what it mapped), QEMU is stopped, every `finally` runs (bind
// rollback, folders), then vfiokit exits with 128 + the signal number. A
// second signal, or a run still unwinding after GRACE_MS, exits at once;
// what the run registered with onInterrupt is then undone synchronously on
// 'exit', the QEMUs it started die of their parent-death signal, and the
// reapers remove their folders (qemu-bridge's spawnTied and createRunDir).
import { constants } from 'node:os';
import { runInterruptCleanups } from './cleanup';
import { exitCodeFor, interrupted } from './errors';
import { Output } from './output';

/**
 * The command set, loaded here rather than imported: loading it loads
 * vfio-core's native addon, and on a machine with no binary for its triple
 * the loader's error (a NATIVE_* code, the triple, the package to install)
 * is reported like any other error, not as a stack trace.
 */
function loadCommands(): typeof import('./cli') {
  try {
    return require('./cli') as typeof import('./cli');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('NATIVE_')) throw err;
    const argv = process.argv.slice(2);
    new Output(argv.includes('--json'), argv.includes('--debug')).error(err);
    process.exit(exitCodeFor(code));
  }
}
const { runCli } = loadCommands();

/** How long an interrupted run may take to undo its work before it is cut short. */
const GRACE_MS = 10_000;

// Every way out passes here, process.exit and uncaught errors included.
process.on('exit', runInterruptCleanups);

const stopping = new AbortController();
/** The exit code decided by the first stop request, if any. */
let stopCode: number | undefined;

function stop(reason: string, code: number): void {
  if (stopCode !== undefined) {
    process.exit(stopCode);
  }
  stopCode = code;
  stopping.abort(interrupted(reason));
  setTimeout(() => {
    process.stderr.write(`vfiokit: still undoing after ${GRACE_MS / 1000} s; leaving now (what is left is removed on exit)\n`);
    process.exit(code);
  }, GRACE_MS).unref();
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => stop(signal, 128 + constants.signals[signal]));
}

// `vfiokit ls | head` closes our stdout early: that is the reader's choice,
// not an error, so the run stops as if interrupted but exits with 0.
let stdoutClosed = false;
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (stdoutClosed) return;
    stdoutClosed = true;
    if (stopCode === undefined) stop('its output was closed (EPIPE)', process.exitCode === undefined ? 0 : Number(process.exitCode));
  });
}

process.on('uncaughtException', (err) => {
  // A bug: say so, and leave; the 'exit' handler and the children's
  // parent-death signal still clean up.
  try {
    process.stderr.write(`vfiokit: internal error: ${err.stack ?? err.message}\n`);
  } catch {
    // stderr is gone too
  }
  process.exit(1);
});

runCli(process.argv.slice(2), { signal: stopping.signal }).then(
  (code) => {
    process.exitCode = stopCode ?? code;
  },
  (err: unknown) => {
    // runCli never rejects; if it does, that is a bug worth a stack trace.
    process.stderr.write(`vfiokit: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = stopCode ?? 1;
  },
);
