import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { takeLock } from './main';

test('a second lab run in the same tree is refused, naming the first one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-lock-'));
  try {
    const release = takeLock(dir);
    t.is(typeof release, 'function');
    t.is(readFileSync(join(dir, '.lock'), 'utf8'), `${process.pid}\n`);
    t.regex(takeLock(dir) as string, new RegExp(`another 'pnpm lab' \\(pid ${process.pid}\\) is running`));
    (release as () => void)();
    const again = takeLock(dir);
    t.is(typeof again, 'function');
    (again as () => void)();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock left by a process that is gone is taken over', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-lock-'));
  try {
    writeFileSync(join(dir, '.lock'), '2147483646\n'); // no such pid
    const release = takeLock(dir);
    t.is(typeof release, 'function');
    (release as () => void)();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
