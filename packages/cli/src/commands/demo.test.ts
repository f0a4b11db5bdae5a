import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { testNeedingQemu } from '@vfiokit/testkit';
import { parseJson, vfiokit } from '../testing/run-cli';

function stepTitles(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((l) => /^\[\d\/\d\] /.test(l))
    .map((l) => l.replace(/^\[\d\/\d\] ([a-z]+( up)?):.*$/, '$1'));
}

/** QEMU processes the demo started (their -name), still alive. */
function demoQemus(tmp: string): string {
  try {
    return execFileSync('pgrep', ['-f', `qmp unix:${tmp}`], { encoding: 'utf8' });
  } catch {
    return '';
  }
}

test('demo runs every step on the simulated host, exits 0 and leaves nothing behind', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'vfiokit-demo-test-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const run = await vfiokit(['demo'], { env: { TMPDIR: tmp } });
  t.is(run.code, 0, run.stderr);
  t.deepEqual(stepTitles(run.stdout), ['discover', 'check', 'bind', 'plan', 'map', 'attach', 'clean up']);
  t.regex(run.stdout, /\n {4}mapped 2 RAM regions \(4 GiB\) at IOVA = GPA\n {6}1 batched call, 2 VFIO_IOMMU_MAP_DMA ioctls, 2 live entries\n/);
  t.regex(run.stdout, /\n {4}group 11: gave back\n {6}0000:04:00\.0 {2}vfio-pci -> xhci_hcd\n/);
  t.deepEqual(readdirSync(tmp), []);
  t.is(demoQemus(tmp), '');
});

testNeedingQemu(test)('demo hot-plugs into a real QEMU and shows its refusal of the simulated device and the unplug timeout', async (t) => {
  const run = await vfiokit(['demo']);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /QEMU \d+\.\d+\.\d+ is up \(pid \d+\), stopped before boot/);
  t.regex(run.stdout, /device_add of hostdev-0000-04-00-0 failed: vfio .*0000:04:00\.0: no such host device/);
  t.regex(run.stdout, /demo-rng -> rp\d function 0, verified in QOM/);
  t.regex(run.stdout, /device_del of demo-rng was accepted, but the guest did not release it within 1000 ms/);
});

test('demo --no-qemu skips the QEMU step and says so', async (t) => {
  const run = await vfiokit(['demo', '--no-qemu']);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /\[6\/7\] attach: skipped\n {4}skipped \(--no-qemu\)\n/);
});

test('demo --json prints one JSON summary and no narration', async (t) => {
  const run = await vfiokit(['--json', 'demo', '--no-qemu']);
  t.is(run.code, 0, run.stderr);
  const body = parseJson<{ ok: boolean; qemu: boolean; seconds: number }>(run);
  t.true(body.ok);
  t.false(body.qemu);
  t.is(typeof body.seconds, 'number');
});
