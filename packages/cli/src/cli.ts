// The vfiokit command set, assembled. `main.ts` runs it; tests run the built binary.
import { runProgram, CommandFactory } from './program';
import { ExitCode } from './exit-codes';
import { labCommand } from './commands/lab';
import { lsCommand } from './commands/ls';
import { traceCommand } from './commands/trace';
import { mapCommand } from './commands/map';
import { attachCommand, detachCommand } from './commands/attach';
import { demoCommand } from './commands/demo';
import { planCommand } from './commands/plan';
import { checkCommand } from './commands/check';
import { bindCommand, unbindCommand } from './commands/bind';
import { showCommand } from './commands/show';
import { draCommand } from './commands/dra';
import { completionCommand } from './commands/completion';
import { runCommand } from './commands/run';
import { upgradeCommand } from './commands/upgrade';
import { persistCommand, unpersistCommand } from './commands/persist';

export const COMMANDS: readonly CommandFactory[] = [lsCommand, showCommand, checkCommand, bindCommand, unbindCommand, persistCommand, unpersistCommand, planCommand, runCommand, upgradeCommand, mapCommand, traceCommand, attachCommand, detachCommand, labCommand, demoCommand, completionCommand, draCommand];

/** `signal` stops the run from outside (main.ts aborts it on SIGINT, SIGTERM, SIGHUP, EPIPE). */
export function runCli(argv: readonly string[], options: { signal?: AbortSignal } = {}): Promise<ExitCode> {
  return runProgram(argv, COMMANDS, options);
}
