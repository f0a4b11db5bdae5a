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

test('ls on the workstation marks the GPU group not viable and names both blocking drivers', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'ls']);
  t.is(run.code, 0);
  t.true(run.stdout.includes('group 1  [NOT VIABLE: 0000:01:00.0 on nouveau, 0000:01:00.1 on snd_hda_intel]\n'));
  t.true(run.stdout.includes('└─ 0000:01:00.1  10de:10f0  Audio device: NVIDIA Corporation GP104 High Definition Audio Controller  [driver snd_hda_intel]  <- blocks\n'));
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
  t.deepEqual(gpu.blocking.map((b) => b.fix), ['vfiokit bind 0000:01:00.0', 'vfiokit bind 0000:01:00.1']);
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
  t.regex(run.stdout, /^group 2 \(domain2-pe1\)/m);
});

test('an unknown --mock fixture exits 3 naming the known ones', async (t) => {
  const run = await vfiokit(['--mock', 'mainframe', 'ls']);
  t.is(run.code, 3);
  t.is(run.stderr, "vfiokit: no simulated host named 'mainframe'\nhint: choose one of workstation, sriov-server, bridge-group, power8, no-iommu, amd-server, no-interrupt-remapping, arm64-server\n");
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
