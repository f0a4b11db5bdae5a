#!/usr/bin/env node
// The `vfiokit` binary.
import { runCli } from './cli';

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
