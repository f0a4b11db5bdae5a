// What every command shares: the global options, the help epilog with the
// exit codes, and the action wrapper that turns a thrown error into one
// message and an exit code. The commands themselves live in commands/ and are
// listed in cli.ts.
import { Command, CommanderError, Option } from 'commander';
import { CommandContext, GlobalOptions } from './context';
import { CliError } from './errors';
import { ExitCode, exitCodesHelp } from './exit-codes';
import { Output } from './output';

// biome-ignore lint/suspicious/noConfusingVoidType: an action that ends without an exit code returns nothing (exit 0)
export type ActionBody<A extends unknown[]> = (ctx: CommandContext, ...args: A) => Promise<ExitCode | void> | ExitCode | void;

/** Run in every action; says how the run ended. */
export interface RunState {
  exitCode: ExitCode;
  /** Aborted when the run is stopped from outside; long work checks it between steps. */
  readonly signal: AbortSignal;
}

/**
 * Wrap a command body: build its context from the global options, run it,
 * dispose the host session whatever happens, and report errors once.
 */
export function action<A extends unknown[]>(state: RunState, body: ActionBody<A>) {
  return async (...params: unknown[]): Promise<void> => {
    const command = params[params.length - 1] as Command;
    const globals = readGlobals(command);
    const out = new Output(globals.json, globals.debug);
    const ctx = new CommandContext(globals, out, state.signal);
    try {
      // Commander passes the positional arguments, the command's options, then the Command.
      const code = await body(ctx, ...(params.slice(0, -1) as A));
      state.exitCode = code ?? ExitCode.Ok;
    } catch (err) {
      state.exitCode = out.error(err).exitCode;
    } finally {
      try {
        await ctx.dispose();
      } catch (err) {
        out.error(err);
        if (state.exitCode === ExitCode.Ok) state.exitCode = ExitCode.HostFailure;
      }
    }
  };
}

function readGlobals(command: Command): GlobalOptions {
  const o = command.optsWithGlobals<{ sysfsRoot?: string; mock?: string; mockDir?: string; json?: boolean; debug?: boolean }>();
  return { sysfsRoot: o.sysfsRoot, mock: o.mock, mockDir: o.mockDir, json: o.json === true, debug: o.debug === true };
}

/**
 * Add the `Example:` block every command's --help ends with. Each one runs as
 * printed, from the root of a clone, on a fresh simulated host, and exits 0
 * (examples.test.ts runs them all).
 */
export function withExamples(command: Command, ...examples: string[]): Command {
  return command.addHelpText('after', `\nExample${examples.length > 1 ? 's' : ''}:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
}

/** The heading of examples that need a real host: /sys with VFIO, a running QEMU, the lab's downloads. */
export const REAL_HOST_EXAMPLES = 'On a real host:';

/** Examples that need what a simulated host cannot give (real sysfs, a running QEMU); printed apart and not run by the tests. */
export function withRealHostExamples(command: Command, ...examples: string[]): Command {
  return command.addHelpText('after', `\n${REAL_HOST_EXAMPLES}\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
}

export type CommandFactory = (state: RunState) => Command;

export function buildProgram(state: RunState, commands: readonly CommandFactory[]): Command {
  const program = new Command('vfiokit')
    .description('Give PCI devices to virtual machines through Linux VFIO: inspect, check, bind, plan, map and hot-plug.')
    .version(readVersion(), '-V, --version')
    .addOption(new Option('--sysfs-root <dir>', 'read and write this sysfs tree instead of /sys'))
    .addOption(
      new Option('--mock <fixture>', 'use a built-in simulated host (workstation, sriov-server, bridge-group, power8, no-iommu) and the mock VFIO backend').conflicts('sysfsRoot'),
    )
    .addOption(new Option('--mock-dir <dir>', 'keep the simulated host in this folder, so later runs see what this one changed (with --mock)'))
    .option('--json', 'print results as one JSON document on stdout (errors as JSON on stderr)', false)
    .option('--debug', 'print stack traces with errors', false)
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addHelpText(
      'after',
      `
Exit codes:
${exitCodesHelp()}

Examples:
  $ vfiokit --mock workstation ls
  $ vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws check 11
  $ vfiokit demo --no-qemu

${REAL_HOST_EXAMPLES}
  $ vfiokit ls
  $ vfiokit check 0000:01:00.0
`,
    );
  for (const make of commands) program.addCommand(make(state));
  return program;
}

function readVersion(): string {
  // package.json sits one level above dist/ in the built package.
  return (require('../package.json') as { version: string }).version;
}

/** Parse argv and run; resolves to the process exit code. Never throws. */
export async function runProgram(argv: readonly string[], commands: readonly CommandFactory[], options: { signal?: AbortSignal } = {}): Promise<ExitCode> {
  const state: RunState = { exitCode: ExitCode.Ok, signal: options.signal ?? new AbortController().signal };
  const program = buildProgram(state, commands);
  const wantsJson = argv.includes('--json');
  const out = new Output(wantsJson, argv.includes('--debug'));
  const failing: { command?: Command } = {};
  applyErrorHandling(program, failing);
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0.
      if (err.exitCode === 0) return ExitCode.Ok;
      out.error(usageError(err, failing.command));
      return ExitCode.Usage;
    }
    return out.error(err).exitCode;
  }
}

/**
 * Commander's error as ours: the `vfiokit:` prefix, a code of our own
 * (`commander.unknownOption` becomes `USAGE_UNKNOWN_OPTION`: scripts match
 * on our codes, and commander's may change under us) and the help to read.
 */
export function usageError(err: CommanderError, command: Command | undefined): CliError {
  const kind = err.code.replace(/^commander\./, '').replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
  const message = err.message.replace(/^error: /, '').replace(/\n+/g, ' ').trim();
  const path: string[] = [];
  for (let c = command; c !== undefined && c !== null; c = c.parent ?? undefined) path.unshift(c.name());
  const help = path.length > 0 ? `${path.join(' ')} --help` : 'vfiokit --help';
  return new CliError(`USAGE_${kind}`, message, ExitCode.Usage, `see '${help}'`, { cause: err });
}

/**
 * Settings every command shares (addCommand does not copy them): help shows
 * the global options; commander throws instead of exiting and keeps its text
 * errors to itself, noting which command failed (runProgram prints the error).
 */
function applyErrorHandling(command: Command, failing: { command?: Command }): void {
  command.exitOverride();
  command.configureHelp({ showGlobalOptions: true });
  command.configureOutput({ outputError: () => (failing.command = command) });
  for (const sub of command.commands) applyErrorHandling(sub, failing);
}
