// What every command gets: the global options, an Output, and the host it
// works on, opened lazily (lab and trace replay never touch one) and always
// disposed, so a --mock run leaves no temporary tree behind.
import { Output } from './output';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';

export interface GlobalOptions {
  readonly sysfsRoot?: string;
  readonly mock?: string;
  readonly json: boolean;
  readonly debug: boolean;
}

/** The host a command acts on: a real sysfs (default /sys) or a simulated fixture host. */
export interface HostSession {
  /** Root of the sysfs tree that discovery reads and bind/unbind write. */
  readonly sysfsRoot: string;
  /** The fixture's name when this is a simulated host (--mock), else undefined. */
  readonly fixture?: string;
  /** Which VFIO backend containers are opened on. */
  readonly backend: 'kernel' | 'mock';
  dispose(): Promise<void>;
}

export class CommandContext {
  private session?: Promise<HostSession>;

  constructor(
    readonly globals: GlobalOptions,
    readonly out: Output,
  ) {}

  /** The host, opened on first use. */
  host(): Promise<HostSession> {
    this.session ??= openHostSession(this.globals);
    return this.session;
  }

  async dispose(): Promise<void> {
    if (this.session) await (await this.session).dispose();
  }
}

async function openHostSession(globals: GlobalOptions): Promise<HostSession> {
  if (globals.mock !== undefined) {
    // Wired to testkit's fixture hosts as soon as they exist (issue 5).
    throw new CliError('UNAVAILABLE', `simulated host ${globals.mock} is not available in this build`, ExitCode.Unavailable);
  }
  return {
    sysfsRoot: globals.sysfsRoot ?? '/sys',
    backend: 'kernel',
    async dispose() {},
  };
}
