// The CLI's one door into @vfiokit/testkit, for `lab` only: the lab boots
// guests from a clone of vfiokit, and testkit is a development dependency,
// absent from an npm install of the command. The rest of the CLI loads this
// module with a dynamic import(): a production run never loads testkit.
import { dirname, join } from 'node:path';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';

/** The compiled lab runner, beside testkit's own entry point. */
export function labRunnerPath(): string {
  let entry: string;
  try {
    entry = require.resolve('@vfiokit/testkit');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new CliError(
      'LAB_NOT_INSTALLED',
      'the lab is not part of an installed vfiokit: it needs @vfiokit/testkit, which is not published',
      ExitCode.Unavailable,
      "run it from a clone of vfiokit: 'pnpm install && pnpm lab'",
    );
  }
  return join(dirname(entry), 'lab', 'main.js');
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
