#!/usr/bin/env node
// The `vfiokit` binary.
import { runCli } from './cli';
import { runInterruptCleanups } from './cleanup';

// Interrupted: remove what this run created (temporary hosts, sockets), then
// exit as a shell expects of a signalled process (128 + signal number).
for (const [signal, number] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
  process.once(signal, () => {
    runInterruptCleanups();
    process.exit(128 + number);
  });
}

// `vfiokit ls | head` closes our stdout early: that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // runCli never rejects; if it does, that is a bug worth a stack trace.
    process.stderr.write(`vfiokit: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
