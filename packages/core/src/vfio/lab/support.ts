// What the lab programs and their unit tests share: the lab guest's edu
// device, a VFIO call's outcome as one word, and the lines and exit of a
// child process a lab case runs.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import * as readline from 'node:readline';
import { labDevice } from '@vfiokit/testkit/lab-guest';
import { VfioError } from '../index';

/** The PCI address of the lab topology's solo edu (inside the lab guest only). */
export const soloBdf = (): string => labDevice('solo').bdf;

/** 'ok', or the VfioError's code (EEXIST, ...), or the text of any other throw. */
export function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof VfioError ? e.code : String(e);
  }
}

/** The JSON lines a child prints, one at a time, each within `ms`. */
export function linesOf(child: ChildProcess, label: string): (ms: number) => Promise<Record<string, unknown>> {
  const queue: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout! }).on('line', (l) => (waiting.length > 0 ? waiting.shift()!(l) : queue.push(l)));
  return (ms) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} said nothing within ${ms} ms; stderr: ${stderr}`)), ms);
      const take = (l: string) => {
        clearTimeout(timer);
        resolve(JSON.parse(l) as Record<string, unknown>);
      };
      if (queue.length > 0) take(queue.shift()!);
      else waiting.push(take);
    });
}

export function exited(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(String(child.signalCode ?? child.exitCode));
    else child.once('exit', (code, signal) => resolve(String(signal ?? code)));
  });
}

/**
 * `node --expose-gc CHILD old ...oldArgs` and `node --expose-gc CHILD new`
 * (or `newRole`)
 * joined by one socketpair, each side's fd 3: the old one's stdio pipe 3
 * (libuv makes pipes socketpairs) handed to the new one. The new one's
 * stdin stays a pipe, for its `go`.
 */
export function spawnHandOverPair(child: string, oldArgs: readonly string[], newRole = 'new'): { oldP: ChildProcess; newP: ChildProcess } {
  const oldP = spawn(process.execPath, ['--expose-gc', child, 'old', ...oldArgs], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  const newP = spawn(process.execPath, ['--expose-gc', child, newRole], { stdio: ['pipe', 'pipe', 'pipe', oldP.stdio[3] as Socket] });
  (oldP.stdio[3] as Socket).destroy();
  return { oldP, newP };
}

/** The old side's report after a hand-over through the API: handed over, and every copy of edu's before, during and after landed. */
export function assertHandedOverWithDma(o: Record<string, unknown>): void {
  assert.deepEqual(o.outcome, { handedOver: true }, JSON.stringify(o));
  assert.equal(o.missed, 0, JSON.stringify(o));
  assert.equal(o.duringMissed, 0, JSON.stringify(o));
  assert.ok(Number(o.landed) >= 8, JSON.stringify(o));
}

/** Kills the old process, tells the new one `go` and returns its next line. */
export async function killOldThenGo(
  oldP: ChildProcess,
  newP: ChildProcess,
  fromNew: (ms: number) => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  oldP.kill('SIGKILL');
  assert.equal(await exited(oldP), 'SIGKILL');
  newP.stdin!.write('go\n');
  const n = await fromNew(300_000);
  console.log(`# after the old process was killed: ${JSON.stringify(n)}`);
  return n;
}
