// The CLI's one door into @vfiokit/testkit. Only --mock, `demo` and `lab`
// need it, and they reach it through this module, which the rest of the CLI
// loads with a dynamic import(): a production run never loads testkit.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { HostSession } from './context';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import { onInterrupt } from './cleanup';

/** The compiled lab runner, beside testkit's own entry point. */
export function labRunnerPath(): string {
  return join(dirname(require.resolve('@vfiokit/testkit')), 'lab', 'main.js');
}

/** Run the lab runner with `args`, its output going straight to ours; resolves to its exit status. */
export function runLabRunner(args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [labRunnerPath(), ...args], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/**
 * A simulated host: fixture `name` built by testkit, written through its
 * model of the kernel. Without `dir` it lives in a temporary folder removed
 * on dispose; with `dir` it is kept there, so a later run sees what this one
 * changed (bind now, unbind in the next command).
 */
export async function openSimulatedHost(name: string, dir: string | undefined): Promise<HostSession> {
  const testkit = await import('@vfiokit/testkit');
  if (!testkit.FIXTURE_HOST_NAMES.includes(name)) {
    throw new CliError(
      'MOCK_UNKNOWN_FIXTURE',
      `no simulated host named '${name}'`,
      ExitCode.NotFound,
      `choose one of ${testkit.FIXTURE_HOST_NAMES.join(', ')}`,
    );
  }
  const host = dir === undefined ? testkit.createFixtureHost(name) : testkit.fixtureHost(name, dir);
  const removeTree = () => rmSync(host.root, { recursive: true, force: true });
  const forget = dir === undefined ? onInterrupt(removeTree) : () => {};
  return {
    fs: host.fs,
    description: `simulated host ${name} (${host.spec.description})`,
    fixture: name,
    // Records live inside the simulated host, and go with it.
    stateDir: join(host.root, 'run', 'vfiokit'),
    backend: 'mock',
    async dispose() {
      forget();
      if (dir === undefined) removeTree();
    },
  };
}
