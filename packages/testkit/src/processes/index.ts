// What tests of child-process lifetimes look at: is a process still there,
// which processes hold a folder, and a wait that gives a loaded machine all
// the time it needs (the deadline is only ever reached by a failure).
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

export { tiedToThisProcess } from './tie';

/** True while `pid` runs; false once it is gone or a zombie (it has exited; only its parent's wait is missing). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state is the field after the parenthesised command name (proc(5)).
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The command line of every live process whose argv mentions `needle` (e.g. a folder or a socket path). */
export function processesMentioning(needle: string): { pid: number; argv: string[] }[] {
  const found: { pid: number; argv: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv.some((a) => a.includes(needle)) && processAlive(pid)) found.push({ pid, argv });
  }
  return found;
}

/** The parent of `pid`, or undefined when it is gone. */
export function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** The executable `pid` runs (its /proc/PID/exe), or undefined. */
export function executableOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/**
 * Poll `condition` every 50 ms until it holds. The deadline (default 120 s)
 * is a hang guard for a machine running several builds at once, not a
 * measurement: a passing run returns as soon as the condition holds.
 */
export async function eventually(condition: () => boolean, what: string, deadlineMs = 120_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`still not true after ${deadlineMs / 1000} s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** True when `path` is gone. */
export function gone(path: string): boolean {
  return !existsSync(path);
}
