// The CLI's one door into @vfiokit/testkit. Only --mock, `demo` and `lab`
// need it, and they reach it through this module, which the rest of the CLI
// loads with a dynamic import(): a production run never loads testkit.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';

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
