// The vfiokit command set, assembled. `main.ts` runs it; tests run the built binary.
import { runProgram, CommandFactory } from './program';
import { ExitCode } from './exit-codes';
import { labCommand } from './commands/lab';

export const COMMANDS: readonly CommandFactory[] = [labCommand];

export function runCli(argv: readonly string[]): Promise<ExitCode> {
  return runProgram(argv, COMMANDS);
}
