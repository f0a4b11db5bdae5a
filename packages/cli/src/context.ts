// What every command gets: the global options, an Output, and the host it
// works on, opened lazily (lab and trace replay never touch one) and always
// disposed, so a --mock run leaves no temporary tree behind.
import { createHostFs, DEFAULT_STATE_DIR, discoverHost, type HostFs, type HostModel } from '@vfiokit/core';
import { Output } from './output';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { invalidInput, notFound } from './errors';
import { checkpoint } from './checkpoint';

export interface GlobalOptions {
  readonly sysfsRoot?: string;
  readonly mock?: string;
  readonly mockDir?: string;
  readonly json: boolean;
  readonly debug: boolean;
}

/** The host a command acts on: a real sysfs (default /sys) or a simulated fixture host. */
export interface HostSession {
  /** Every read and write of the host goes through this (core's seam). */
  readonly fs: HostFs;
  /** What this host is, for people: `/sys`, `simulated host workstation`. */
  readonly description: string;
  /** The fixture's name when this is a simulated host (--mock), else undefined. */
  readonly fixture?: string;
  /** Where bind records (each device's original driver) are kept between runs. */
  readonly stateDir: string;
  /** Stands for `/` where configuration is written (boot persistence): `/`, or the simulated host's folder. */
  readonly configRoot: string;
  /** Which VFIO backend containers are opened on. */
  readonly backend: 'kernel' | 'mock';
  dispose(): Promise<void>;
}

export class CommandContext {
  private session?: Promise<HostSession>;

  constructor(
    readonly globals: GlobalOptions,
    readonly out: Output,
    /** Aborted when the run is stopped from outside (Ctrl-C, SIGTERM, SIGHUP, a closed stdout). */
    readonly signal: AbortSignal = new AbortController().signal,
  ) {}

  /** A context for the same output with other global options (its own host session). */
  withGlobals(globals: GlobalOptions): CommandContext {
    return new CommandContext(globals, this.out, this.signal);
  }

  /** The host, opened on first use. */
  host(): Promise<HostSession> {
    this.session ??= openHostSession(this.globals).then(async (session) => {
      await checkpoint('host-opened', this.signal);
      return session;
    });
    return this.session;
  }

  /** A fresh discovery of the host: call again after changing it. */
  async discover(): Promise<HostModel> {
    return discoverHost((await this.host()).fs);
  }

  async dispose(): Promise<void> {
    // A session that failed to open has nothing to dispose; its error was reported already.
    const session = await this.session?.catch(() => undefined);
    await session?.dispose();
  }
}

async function openHostSession(globals: GlobalOptions): Promise<HostSession> {
  if (globals.mockDir !== undefined && globals.mock === undefined) {
    throw invalidInput('--mock-dir needs --mock', "name the simulated host too: 'vfiokit --mock workstation --mock-dir DIR ...'");
  }
  if (globals.mock !== undefined) {
    // Loaded on demand: a run on the real host never imports the fixture hosts.
    const { openSimulatedHost } = await import('./simulated');
    return openSimulatedHost(globals.mock, globals.mockDir);
  }
  const sysfsRoot = globals.sysfsRoot ?? '/sys';
  // Without this, a mistyped --sysfs-root reads as a host with no devices and
  // no IOMMU, and is diagnosed as "IOMMU off".
  if (!existsSync(join(sysfsRoot, 'bus', 'pci', 'devices'))) {
    throw notFound(
      existsSync(sysfsRoot) ? `${sysfsRoot} is not a sysfs tree: it has no bus/pci/devices` : `sysfs root ${sysfsRoot} does not exist`,
      globals.sysfsRoot === undefined ? 'mount sysfs on /sys (mount -t sysfs sysfs /sys)' : 'give --sysfs-root the folder sysfs is mounted on (/sys), or a copy of one',
    );
  }
  return {
    fs: createHostFs({ sysfsRoot }),
    description: sysfsRoot,
    stateDir: DEFAULT_STATE_DIR,
    configRoot: '/',
    backend: 'kernel',
    async dispose() {},
  };
}
