// The QEMUs testkit starts (the lab's guests, integration tests' VMs) end
// with the process that started them, as vfiokit's own do: util-linux's
// `setpriv --pdeathsig KILL` execs the program with the kernel's
// parent-death signal set (prctl(PR_SET_PDEATHSIG)), so a lab runner or a
// test worker that is killed takes its QEMU with it. (qemu-bridge's
// spawnTied is the production version, with a guard for the fork/prctl
// race; testkit cannot import it, qemu-bridge's tests import testkit.)
import { spawnSync } from 'node:child_process';

let setprivPresent: boolean | undefined;

/** [binary, args] to spawn so that the program gets SIGKILL when this process dies. */
export function tiedToThisProcess(binary: string, args: readonly string[]): [string, string[]] {
  setprivPresent ??= spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  return setprivPresent ? ['setpriv', ['--pdeathsig', 'KILL', binary, ...args]] : [binary, [...args]];
}
