// The CLI's one door into @vfiokit/testkit. Only --mock, `demo` and `lab`
// need it, and they reach it through this module, which the rest of the CLI
// loads with a dynamic import(): a production run never loads testkit.
import { dirname, join } from 'node:path';
import type { HostSession } from './context';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import { onInterrupt } from './cleanup';

/** The compiled lab runner, beside testkit's own entry point. */
export function labRunnerPath(): string {
  return join(dirname(require.resolve('@vfiokit/testkit')), 'lab', 'main.js');
}

/**
 * Run the lab runner with `args`, its output going straight to ours;
 * resolves to its exit status. It is tied to this process (it dies if
 * vfiokit is killed, and its guests' QEMUs with it) and shares our terminal
 * session, so a Ctrl-C reaches it as it reaches us; `signal` ends it too.
 */
export async function runLabRunner(args: readonly string[], signal?: AbortSignal): Promise<number> {
  const { spawnTied } = await import('@vfiokit/qemu-bridge');
  return new Promise((resolve, reject) => {
    const child = spawnTied([process.execPath, labRunnerPath(), ...args], { stdio: ['inherit', 'inherit', 'inherit'], ownSession: false });
    const stop = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', stop, { once: true });
    child.on('error', reject);
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', stop);
      resolve(code ?? (sig ? 128 : 1));
    });
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
  // A temporary host lives in a run dir: its reaper removes it even if this
  // process is killed with SIGKILL (qemu-bridge's createRunDir).
  const run = dir === undefined ? (await import('@vfiokit/qemu-bridge')).createRunDir(`vfiokit-${name}-`) : undefined;
  const host = testkit.fixtureHost(name, run?.path ?? dir!);
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
