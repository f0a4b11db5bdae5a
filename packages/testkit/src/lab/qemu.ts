// Runs one guest to completion: QEMU's serial console goes to a file as it
// arrives (so a hung guest still leaves its last words behind), and a guest
// that has not powered off by the deadline is killed and reported as hung.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { tiedToThisProcess } from '../processes/tie';

export interface GuestRun {
  /** QEMU's exit code, or null when it was killed. */
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly elapsedMs: number;
  /** The whole console, also saved to `consolePath`. */
  readonly console: string;
}

export interface GuestOptions {
  readonly qemu: string;
  /** Arguments; the console must be on stdio (`-serial stdio` or `-chardev stdio`). */
  readonly args: readonly string[];
  readonly consolePath: string;
  readonly timeoutMs: number;
  /** Called for every console line, e.g. to relay progress markers. */
  readonly onLine?: (line: string) => void;
}

export function runGuest(opts: GuestOptions): Promise<GuestRun> {
  const started = Date.now();
  const file = createWriteStream(opts.consolePath);
  file.write(`# ${opts.qemu} ${opts.args.join(' ')}\n`);
  const child = spawn(...tiedToThisProcess(opts.qemu, opts.args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let partial = '';
  const take = (chunk: Buffer): void => {
    const s = chunk.toString('utf8');
    text += s;
    file.write(chunk);
    partial += s;
    const lines = partial.split(/\r?\n/);
    partial = lines.pop()!;
    for (const line of lines) opts.onLine?.(line.replace(/\r/g, ''));
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs);

  return new Promise((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      file.end();
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (partial) opts.onLine?.(partial);
      file.end(() => resolve({ exitCode: code, timedOut, elapsedMs: Date.now() - started, console: text }));
    });
  });
}
