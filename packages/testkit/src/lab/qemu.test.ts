import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest } from './qemu';

// A shell stands in for QEMU: runGuest only needs a process with a console on stdout.

test('a guest that does not stop by the deadline is killed and reported as timed out, its console kept', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-guest-'));
  try {
    const consolePath = join(dir, 'console.log');
    const run = await runGuest({ qemu: 'sh', args: ['-c', 'echo booting; exec sleep 30'], consolePath, timeoutMs: 500 });
    t.true(run.timedOut);
    t.is(run.exitCode, null);
    t.true(readFileSync(consolePath, 'utf8').includes('booting\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a guest that powers off gives its exit code and every console line in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-guest-'));
  try {
    const lines: string[] = [];
    const run = await runGuest({
      qemu: 'sh',
      args: ['-c', 'printf "one\\r\\ntwo\\nthree"; exit 3'],
      consolePath: join(dir, 'console.log'),
      timeoutMs: 10_000,
      onLine: (l) => lines.push(l),
    });
    t.false(run.timedOut);
    t.is(run.exitCode, 3);
    t.deepEqual(lines, ['one', 'two', 'three']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
