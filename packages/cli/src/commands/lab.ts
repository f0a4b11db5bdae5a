// `vfiokit lab`: the real-kernel lab from testkit, run as its own process so
// its TAP output and exit status reach the caller unchanged.
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { action, RunState, withRealHostExamples } from '../program';
import { CliError } from '../errors';
import { ExitCode } from '../exit-codes';

export function labCommand(state: RunState): Command {
  const cmd = new Command('lab')
    .description('boot the real-kernel VFIO lab under QEMU and run every lab case (prints TAP)')
    .argument('[args...]', 'passed to the lab runner unchanged (a profile name: x86, pseries)')
    .allowUnknownOption(true)
    .action(
      action(state, async (ctx, args: string[]) => {
        const testkit = await import('../testkit');
        const runner = testkit.labRunnerPath();
        if (!existsSync(runner)) {
          throw new CliError('LAB_NOT_BUILT', `the lab runner ${runner} has not been built`, ExitCode.Unavailable, "run 'pnpm build' first");
        }
        if (ctx.globals.json) ctx.out.note('lab prints TAP; --json does not apply');
        const status = await testkit.runLabRunner(args, ctx.signal);
        // The runner prints its own failures: 2 is a bad argument (an unknown
        // profile), anything else non-zero a lab case that failed or could not run.
        if (status === 0) return ExitCode.Ok;
        return status === 2 ? ExitCode.Usage : ExitCode.Refused;
      }),
    );
  return withRealHostExamples(cmd, 'vfiokit lab', 'vfiokit lab x86');
}
