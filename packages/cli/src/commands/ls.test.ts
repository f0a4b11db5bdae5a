import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createFixtureHost } from '@vfiokit/testkit';
import test from 'ava';
import { parseJson, vfiokit } from '../testing/run-cli';

interface LsJson {
  platform: string;
  iommu: { present: boolean; kind?: string };
  groups: { id: number; viable: boolean; blocking: { address: string; driver: string; fix: string }[]; devices: { address: string; driver: string | null }[] }[];
  ungrouped: { address: string }[];
}

test('ls on the workstation marks the GPU group protected by the console rule and shows both drivers', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'ls']);
  t.is(run.code, 0);
  t.true(run.stdout.includes('IOMMU group 1  [protected: console-display (--force console-display to move it)]\n'));
  t.true(run.stdout.includes('  01:00.1 Audio device [0403]: NVIDIA Corporation GP104 High Definition Audio Controller [10de:10f0] (rev a1)\n\tKernel driver in use: snd_hda_intel\n'));
  t.true(run.stdout.includes('IOMMU: intel-vtd (dmar0, dmar1)\n'));
});

test('ls --json gives every group with its devices and viability', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'ls']);
  t.is(run.code, 0);
  const body = parseJson<LsJson>(run);
  t.is(body.platform, 'x86');
  t.true(body.iommu.present);
  const gpu = body.groups.find((g) => g.id === 1)!;
  t.false(gpu.viable);
  t.deepEqual(gpu.devices.map((d) => [d.address, d.driver]), [
    ['0000:00:01.0', 'pcieport'],
    ['0000:01:00.0', 'nouveau'],
    ['0000:01:00.1', 'snd_hda_intel'],
  ]);
  // The GPU drives the console: its fix carries the override bind would ask for.
  t.deepEqual(gpu.blocking.map((b) => b.fix), ['vfiokit bind --force console-display 0000:01:00.0', 'vfiokit bind --force console-display 0000:01:00.1']);
  t.deepEqual(body.ungrouped, []);
});

test('ls on a host without an IOMMU lists every device as ungrouped', async (t) => {
  const run = await vfiokit(['--mock', 'no-iommu', '--json', 'ls']);
  t.is(run.code, 0);
  const body = parseJson<LsJson>(run);
  t.false(body.iommu.present);
  t.deepEqual(body.groups, []);
  t.true(body.ungrouped.some((d) => d.address === '0000:00:02.0'));
});

test('ls names a POWER group by its PE', async (t) => {
  const run = await vfiokit(['--mock', 'power8', 'ls']);
  t.is(run.code, 0);
  t.regex(run.stdout, /^IOMMU group 2 \(domain2-pe1\)/m);
});

test('an unknown --mock fixture exits 3 naming the known ones', async (t) => {
  const run = await vfiokit(['--mock', 'mainframe', 'ls']);
  t.is(run.code, 3);
  t.is(run.stderr, "vfiokit: no simulated host named 'mainframe'\nhint: choose one of workstation, sriov-server, bridge-group, power8, no-iommu, dra-node, amd-server, no-interrupt-remapping, arm64-server, iommufd-workstation\n");
});

test('--sysfs-root reads another sysfs tree', async (t) => {
  const host = createFixtureHost('workstation');
  t.teardown(() => rmSync(host.root, { recursive: true, force: true }));
  const run = await vfiokit(['--sysfs-root', join(host.root, 'sys'), '--json', 'ls']);
  t.is(run.code, 0, run.stderr);
  const body = parseJson<LsJson>(run);
  t.deepEqual(body.groups.find((g) => g.id === 11)!.devices.map((d) => d.address), ['0000:04:00.0']);
});

test('--sysfs-root and --mock cannot be used together', async (t) => {
  const run = await vfiokit(['--sysfs-root', '/sys', '--mock', 'workstation', 'ls']);
  t.is(run.code, 2);
  t.regex(run.stderr, /option '--mock <fixture>' cannot be used with option '--sysfs-root <dir>'/);
});

test('ls prints each function as lspci -nn does, with class code, IDs and revision, its driver beneath', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'ls']);
  t.true(run.stdout.includes('  01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tKernel driver in use: nouveau  host needs it: it drives the boot console (boot_vga = 1)\n'));
});

test('ls marks a group a host driver holds apart from one a safety rule protects, and a bridges-only group as nothing to assign', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'ls']);
  t.true(run.stdout.includes('IOMMU group 11  [movable: xhci_hcd (vfiokit bind 11)]\n'));
  t.true(run.stdout.includes('IOMMU group 4  [protected: mounted-filesystem, swap (--force mounted-filesystem --force swap to move it)]\n'));
  t.true(run.stdout.includes('IOMMU group 0  [bridges only: nothing to assign]\n'));
  const json = parseJson<{ groups: { id: number; state: string }[] }>(await vfiokit(['--mock', 'workstation', '--json', 'ls']));
  t.deepEqual(
    [0, 1, 11].map((id) => json.groups.find((g) => g.id === id)!.state),
    ['host-bridge-only', 'protected', 'movable'],
  );
});

test('ls -d and --group keep only the matching groups', async (t) => {
  const byIds = await vfiokit(['--mock', 'workstation', 'ls', '-d', '1b21:']);
  t.deepEqual([...byIds.stdout.matchAll(/^IOMMU group (\d+)/gm)].map((m) => m[1]), ['11']);
  const byGroup = parseJson<{ groups: { id: number }[] }>(await vfiokit(['--mock', 'workstation', '--json', 'ls', '--group', '1', '11']));
  t.deepEqual(byGroup.groups.map((g) => g.id), [1, 11]);
  t.is((await vfiokit(['--mock', 'workstation', 'ls', '-d', 'nvidia'])).code, 4);
});

test('ls colours only a terminal: piped output has no escape codes even with a colour-happy TERM', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'ls'], { env: { TERM: 'xterm-256color' } });
  t.false(run.stdout.includes('\u001b['));
});

test('bind of a group holding only bridges is refused: nothing in it could go to a guest', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'bind', '0']);
  t.is(run.code, 5);
  t.regex(run.stderr, /^vfiokit: group 0 holds only bridges \(0000:00:00\.0\): there is nothing in it to assign\n/);
});
