import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parseJson, vfiokit } from '../testing/run-cli';

function hostDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-persist-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('persist then ls shows the device going to vfio-pci at boot, in text and JSON', async (t) => {
  const dir = hostDir(t);
  const ws = ['--mock', 'workstation', '--mock-dir', dir];
  const p = await vfiokit([...ws, 'persist', '11']);
  t.is(p.code, 0, p.stderr);
  t.regex(p.stdout, /^group 11: goes to vfio-pci at boot, by udev \(udev runs here: a rule sets driver_override for exactly these devices, as driverctl does\)\n/);
  const ls = await vfiokit([...ws, 'ls', '--group', '11']);
  t.regex(ls.stdout, /\tKernel driver in use: xhci_hcd\n\tAt boot: vfio-pci \(vfiokit persist, udev: \/etc\/udev\/rules\.d\/61-vfiokit-0000:04:00\.0\.rules\)\n/);
  const json = parseJson<{ groups: { id: number; devices: { address: string; atBoot: unknown }[] }[] }>(await vfiokit([...ws, '--json', 'ls']));
  const atBoot = json.groups.flatMap((g) => g.devices).filter((d) => d.atBoot !== null);
  t.deepEqual(atBoot.map((d) => [d.address, d.atBoot]), [['0000:04:00.0', { driver: 'vfio-pci', method: 'udev', file: '/etc/udev/rules.d/61-vfiokit-0000:04:00.0.rules' }]]);
  const u = await vfiokit([...ws, 'unpersist', '0000:04:00.0']);
  t.is(u.code, 0, u.stderr);
  t.notRegex((await vfiokit([...ws, 'ls', '--group', '11'])).stdout, /At boot/);
});

test('persist of a group a safety rule protects exits 5 with the --force that waives it, and writes nothing', async (t) => {
  const dir = hostDir(t);
  const ws = ['--mock', 'workstation', '--mock-dir', dir];
  const p = await vfiokit([...ws, 'persist', '11', '1']);
  t.is(p.code, 5, p.stderr);
  t.regex(p.stderr, /^vfiokit: group 1 cannot go to vfio-pci at boot: .*console-display/);
  t.regex(p.stderr, /hint: vfiokit persist --force console-display 1/);
  // Group 11 came first and was fine, but nothing is written when any group is refused.
  t.notRegex((await vfiokit([...ws, 'ls'])).stdout, /At boot/);
});

test('persist --method modprobe of a VF whose IDs other VFs share exits 5 and suggests udev', async (t) => {
  const p = await vfiokit(['--mock', 'sriov-server', 'persist', '--method', 'modprobe', '4']);
  t.is(p.code, 5, p.stderr);
  t.regex(p.stderr, /hint: use --method udev, which sets the override per device\n/);
});

test('persist --method modprobe of every VF with those IDs at once is accepted', async (t) => {
  const p = await vfiokit(['--mock', 'sriov-server', '--json', 'persist', '--method', 'modprobe', '--dry-run', '4', '5', '6', '7']);
  t.is(p.code, 0, p.stderr);
  const body = parseJson<{ groups: { method: string; files: { text: string }[] }[] }>(p);
  t.regex(body.groups[3]!.files[0]!.text, /^options vfio-pci ids=8086:154c\nsoftdep iavf pre: vfio-pci\n$/m);
});
