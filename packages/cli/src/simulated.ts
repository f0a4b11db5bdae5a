// The simulated hosts behind --mock and `demo`: @vfiokit/fixture-hosts, a
// published package, so the installed command offers them without testkit.
// Loaded with a dynamic import() by context.ts: a run on the real host never
// loads it.
import { join } from 'node:path';
import { FIXTURE_HOST_NAMES, fixtureHost } from '@vfiokit/fixture-hosts';
import type { HostSession } from './context';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import { onInterrupt } from './cleanup';

/**
 * A simulated host: fixture `name`, written through the fixture hosts'
 * model of the kernel. Without `dir` it lives in a temporary folder removed
 * on dispose; with `dir` it is kept there, so a later run sees what this one
 * changed (bind now, unbind in the next command).
 */
export async function openSimulatedHost(name: string, dir: string | undefined): Promise<HostSession> {
  if (!FIXTURE_HOST_NAMES.includes(name)) {
    throw new CliError('MOCK_UNKNOWN_FIXTURE', `no simulated host named '${name}'`, ExitCode.NotFound, `choose one of ${FIXTURE_HOST_NAMES.join(', ')}`);
  }
  // A temporary host lives in a run dir: its reaper removes it even if this
  // process is killed with SIGKILL (qemu-bridge's createRunDir).
  const run = dir === undefined ? (await import('@vfiokit/qemu-bridge')).createRunDir(`vfiokit-${name}-`) : undefined;
  const host = fixtureHost(name, run?.path ?? dir!);
  const removeTree = () => run?.remove();
  const forget = run ? onInterrupt(removeTree) : () => {};
  return {
    fs: host.fs,
    description: `simulated host ${name} (${host.spec.description})`,
    fixture: name,
    // Records live inside the simulated host, and go with it.
    stateDir: join(host.root, 'run', 'vfiokit'),
    configRoot: host.root,
    backend: 'mock',
    async dispose() {
      forget();
      removeTree();
    },
  };
}
