import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unixSocketListening } from './cpr';

const HEADER = 'Num       RefCount Protocol Flags    Type St Inode Path\n';

test('a UNIX socket counts as listening only once listen() has run, as /proc/net/unix flags it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cpr-test-'));
  const path = join(dir, 'cpr.sock');
  const server = createServer();
  try {
    t.false(unixSocketListening(path));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    t.true(unixSocketListening(path));
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket that is bound but not yet listening (flags 0) does not count, whatever its path', (t) => {
  const bound = `${HEADER}0000000093e5745f: 00000002 00000000 00000000 0001 01 4242 /run/x/cpr.sock\n`;
  const listening = `${HEADER}0000000093e5745f: 00000002 00000000 00010000 0001 01 4242 /run/x/cpr.sock\n`;
  t.false(unixSocketListening('/run/x/cpr.sock', bound));
  t.true(unixSocketListening('/run/x/cpr.sock', listening));
  t.false(unixSocketListening('/run/x/cpr', listening));
});
