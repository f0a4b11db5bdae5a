import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { fixtureHost } from '@vfiokit/testkit';
import { parseJson, vfiokit } from '../testing/run-cli';

function keptHost(t: { teardown(fn: () => void): void }): string[] {
  return ['--mock', 'workstation', '--mock-dir', keptDir(t)];
}

function keptDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('bind moves a group to vfio-pci and a later run sees it there; unbind gives the old driver back', async (t) => {
  const host = keptHost(t);
  const bound = await vfiokit([...host, 'bind', '0000:04:00.0']);
  t.is(bound.code, 0);
  t.is(bound.stdout.split('\n')[1], '  0000:04:00.0  xhci_hcd -> vfio-pci');
  const after = parseJson<{ device: { driver: string } }>(await vfiokit([...host, '--json', 'show', '04:00.0']));
  t.is(after.device.driver, 'vfio-pci');
  const unbound = await vfiokit([...host, 'unbind', '11']);
  t.is(unbound.code, 0);
  t.is(unbound.stdout.split('\n')[1], '  0000:04:00.0  vfio-pci -> xhci_hcd');
  const back = parseJson<{ device: { driver: string } }>(await vfiokit([...host, '--json', 'show', '04:00.0']));
  t.is(back.device.driver, 'xhci_hcd');
});

test('bind --dry-run says what would move and leaves every driver as it was', async (t) => {
  const host = keptHost(t);
  const run = await vfiokit([...host, '--json', 'bind', '--dry-run', '11']);
  t.is(run.code, 0);
  const body = parseJson<{ dryRun: boolean; groups: { group: number; changes: unknown[]; plan: { devices: { address: string; action: string }[] } }[] }>(run);
  t.true(body.dryRun);
  t.deepEqual(body.groups[0]!.plan.devices, [{ address: '0000:04:00.0', action: 'bind', driver: 'xhci_hcd' }]);
  t.deepEqual(body.groups[0]!.changes, []);
  const after = parseJson<{ device: { driver: string } }>(await vfiokit([...host, '--json', 'show', '04:00.0']));
  t.is(after.device.driver, 'xhci_hcd');
});

test('bind of the console GPU is refused with exit 5 and the override in the hint', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'bind', '01:00.0']);
  t.is(run.code, 5);
  t.is(run.stdout, '');
  t.is(
    run.stderr,
    "vfiokit: refusing to detach 0000:01:00.0 from nouveau: it drives the boot console (boot_vga = 1) (rule 'console-display'); override with --force console-display if the host can do without it\nhint: vfiokit bind --force console-display 0000:01:00.0\n",
  );
});

test('bind with --force console-display moves the GPU and its audio function together', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'bind', '--force', 'console-display', '01:00.0']);
  t.is(run.code, 0);
  const body = parseJson<{ groups: { group: number; changes: { address: string; from: string; to: string }[] }[] }>(run);
  t.deepEqual(body.groups[0]!.changes, [
    { address: '0000:01:00.0', from: 'nouveau', to: 'vfio-pci' },
    { address: '0000:01:00.1', from: 'snd_hda_intel', to: 'vfio-pci' },
  ]);
});

test('bind of several targets that fails on a later one puts the earlier groups back', async (t) => {
  const host = keptHost(t);
  const run = await vfiokit([...host, 'bind', '04:00.0', '01:00.0']);
  t.is(run.code, 5);
  const usb = parseJson<{ device: { driver: string } }>(await vfiokit([...host, '--json', 'show', '04:00.0']));
  t.is(usb.device.driver, 'xhci_hcd');
});

test('a failed bind of several targets leaves on vfio-pci a device someone else put there before the run', async (t) => {
  const dir = keptDir(t);
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  // Someone else moves the GPU's audio function to vfio-pci, by hand, as an admin would.
  const sim = fixtureHost('workstation', dir);
  sim.fs.writeText('/sys/bus/pci/devices/0000:01:00.1/driver_override', 'vfio-pci');
  sim.fs.writeText('/sys/bus/pci/drivers/snd_hda_intel/unbind', '0000:01:00.1');
  sim.fs.writeText('/sys/bus/pci/drivers_probe', '0000:01:00.1');
  t.is(sim.deviceStates()['0000:01:00.1']!.driver, 'vfio-pci');
  // Group 1 binds (the GPU moves), then the NVMe root disk is refused: group 1 is rolled back.
  const run = await vfiokit([...host, 'bind', '--force', 'console-display', '01:00.0', '02:00.0']);
  t.is(run.code, 5);
  const drivers = fixtureHost('workstation', dir).deviceStates();
  t.is(drivers['0000:01:00.0']!.driver, 'nouveau');
  t.is(drivers['0000:01:00.1']!.driver, 'vfio-pci');
});

test('an unknown --force rule is invalid input', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'bind', '--force', 'gpu', '01:00.0']);
  t.is(run.code, 4);
  t.is(run.stderr, 'vfiokit: --force gpu: no such safety rule\nhint: use one of root-filesystem, mounted-filesystem, swap, default-route, active-interface, console-display, bridge, or all\n');
});

test('unbind of a group vfiokit never bound has nothing to give back and exits 0', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'unbind', '11']);
  t.is(run.code, 0);
  t.is(run.stdout, 'group 11: nothing on vfio-pci to give back\n');
});

test('unbind of a device the host does not have exits 3', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'unbind', '0000:42:00.0']);
  t.is(run.code, 3);
  t.regex(run.stderr, /^vfiokit: no PCI device 0000:42:00\.0 on this host/);
});

test('--mock-dir without --mock is invalid input', async (t) => {
  const run = await vfiokit(['--mock-dir', '/tmp/x', 'ls']);
  t.is(run.code, 4);
  t.is(run.stderr, "vfiokit: --mock-dir needs --mock\nhint: name the simulated host too: 'vfiokit --mock workstation --mock-dir DIR ...'\n");
});

test('bind of an SR-IOV physical function with VFs enabled is refused with exit 5', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', 'bind', '--dry-run', '0000:3b:00.0']);
  t.is(run.code, 5);
  t.regex(run.stderr, /^vfiokit: 0000:3b:00\.0 is an SR-IOV physical function with 4 VFs enabled/);
});

test('bind --force followed by an address says --force takes a rule, instead of losing the address', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'bind', '--force', '01:00.0']);
  t.is(run.code, 2);
  t.regex(run.stderr, /^vfiokit: .*'01:00\.0' is a device or group, not a rule: --force names the safety rule to waive \(root-filesystem, .*\), e\.g\. --force console-display 01:00\.0\nhint: see 'vfiokit bind --help'\n$/);
});
