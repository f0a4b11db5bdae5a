import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { vfiokit } from '../testing/run-cli';

test('demo runs every step on the simulated host, exits 0 and leaves its temporary folder empty', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'vfiokit-demo-test-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const run = await vfiokit(['demo'], { env: { TMPDIR: tmp }, timeoutMs: 60_000 });
  t.is(run.code, 0, run.stderr);
  const headers = run.stdout.split('\n').filter((l) => /^\[\d\/\d\] /.test(l)).map((l) => l.replace(/^\[\d\/\d\] (\w+( \w+)?):.*$/, '$1'));
  t.deepEqual(headers.slice(0, 4), ['discover', 'check', 'bind', 'plan']);
  t.is(headers[headers.length - 1], 'clean up');
  t.regex(run.stdout, /\n {4}group 11: gave back\n {6}0000:04:00\.0 {2}vfio-pci -> xhci_hcd\n/);
  t.deepEqual(readdirSync(tmp), []);
});
