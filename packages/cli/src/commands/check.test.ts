import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { qemuBuild } from '@vfiokit/testkit';
import { parseJson, vfiokit } from '../testing/run-cli';

interface CheckJson {
  ok: boolean;
  devices: { address: string; group: number | null; ok: boolean; checks: { check: string; ok: boolean; message: string; fix?: string }[] }[];
}

test('check of the console GPU fails with exit 5, giving the bind and the override commands', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'check', '01:00.0']);
  t.is(run.code, 5);
  const body = parseJson<CheckJson>(run);
  t.false(body.ok);
  const failed = body.devices[0]!.checks.filter((c) => !c.ok);
  t.deepEqual(
    failed.map((c) => [c.check, c.fix]),
    [
      // Never a plain bind, which the console-display rule would refuse.
      ['viability', 'vfiokit bind --force console-display 0000:01:00.0   # only if the host can do without it'],
      ['safety', 'vfiokit bind --force console-display 0000:01:00.0   # only if the host can do without it'],
    ],
  );
});

test('check of a device whose group is on vfio-pci passes with exit 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = await vfiokit([...host, 'check', '04:00.0']);
  t.is(run.code, 0);
  t.is(run.stdout.split('\n')[0], '0000:04:00.0 (group 11): can be assigned');
});

test('check on a host without an IOMMU says how to turn it on', async (t) => {
  const run = await vfiokit(['--mock', 'no-iommu', 'check', '00:17.0']);
  t.is(run.code, 5);
  t.is(
    run.stdout,
    '0000:00:17.0: cannot be assigned yet\n  FAIL iommu     this host has no IOMMU groups: the IOMMU is off or absent\n                 fix: enable VT-d or AMD-Vi in the firmware, add intel_iommu=on to the kernel command line on Intel, and reboot\n',
  );
});

test('check of an unknown address exits 3', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'check', '0000:42:00.0']);
  t.is(run.code, 3);
  t.regex(run.stderr, /^vfiokit: no PCI device 0000:42:00\.0 on this host/);
});

test('check --memory compares what the guest pins with RLIMIT_MEMLOCK and gives the number to raise it to', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'check', '--memory', '8G', '04:00.0']);
  t.is(run.code, 5);
  const body = parseJson<CheckJson & { memlock: { ok: boolean; message: string; fix: string } }>(run);
  t.false(body.memlock.ok);
  t.is(body.memlock.message, 'RLIMIT_MEMLOCK is 8 MiB but the assignment pins 8 GiB (9 GiB with headroom): VFIO_IOMMU_MAP_DMA would fail with ENOMEM');
  t.true(body.memlock.fix.includes('LimitMEMLOCK=9663676416'));
});

test('check of an SR-IOV physical function with VFs says bind would refuse it and what to do instead', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', '--json', 'check', '3b:00.0']);
  t.is(run.code, 5);
  const body = parseJson<CheckJson>(run);
  const bind = body.devices[0]!.checks.find((c) => c.check === 'bind')!;
  t.false(bind.ok);
  t.is(bind.fix, 'disable them first (echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs), or assign a VF instead');
  t.is(body.devices[0]!.checks.find((c) => c.check === 'viability')!.fix, undefined);
});

test('check takes a group number, as show, bind and attach do', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'check', '11']);
  t.is(run.code, 5);
  t.is(run.stdout.split('\n')[0], '0000:04:00.0 (group 11): cannot be assigned yet');
});

test('check on a host without interrupt remapping fails before any attach, with both fixes in --json', async (t) => {
  const run = await vfiokit(['--mock', 'no-interrupt-remapping', '--json', 'check', '02:00.0']);
  t.is(run.code, 5);
  const msi = parseJson<CheckJson>(run).devices[0]!.checks.find((c) => c.check === 'msi')!;
  t.false(msi.ok);
  t.regex(msi.message, /^no interrupt remapping .*VFIO_SET_IOMMU fails with EPERM/);
  t.regex(msi.fix!, /interrupt remapping in the firmware[\s\S]*or load vfio_iommu_type1 with allow_unsafe_interrupts=1 .*forge MSIs/);
});

test('check on an arm64 server with a GIC ITS reports its MSI isolation the Arm way', async (t) => {
  const run = await vfiokit(['--mock', 'arm64-server', 'check', '0004:01:00.0']);
  t.regex(run.stdout, /ok {3}msi {7}MSIs are isolated by the GIC ITS/);
});

test('check on an iommufd host with QEMU 10.0, after bind, says QEMU takes the device by its cdev through iommufd', async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const host = ['--mock', 'iommufd-workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const qemu = qemuBuild('10.0').binary;
  const run = await vfiokit([...host, '--json', 'check', '04:00.0', '--qemu', qemu]);
  t.is(run.code, 0, run.stderr);
  const backend = parseJson<CheckJson>(run).devices[0]!.checks.find((c) => c.check === 'backend')!;
  t.true(backend.ok);
  t.true(backend.message.startsWith('iommufd: QEMU takes 0000:04:00.0 by /dev/vfio/devices/vfio0 ('), backend.message);
});

test('check on a host without /dev/iommu names the VFIO container and why, without failing', async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const run = await vfiokit(['--mock', 'workstation', '--json', 'check', '04:00.0']);
  const backend = parseJson<CheckJson>(run).devices[0]!.checks.find((c) => c.check === 'backend')!;
  t.deepEqual(backend, {
    check: 'backend',
    ok: true,
    message: "VFIO container and group, not iommufd: no /dev/iommu: the kernel has no CONFIG_IOMMUFD (Debian's kernels are built without it) or the iommufd module is not loaded",
  });
});
