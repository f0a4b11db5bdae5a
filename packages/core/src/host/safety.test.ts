import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost, findDevice } from './discover';
import { activeInterfaces, activeSwap, defaultRouteInterfaces, findProtectedDevices, rootFilesystem, safetyViolations } from './safety';

const protectedBy = (name: string, rule: string) => {
  const host = createFixtureHost(name);
  return findProtectedDevices(host.fs, discoverHost(host.fs))
    .filter((f) => f.rule === rule)
    .map((f) => f.address);
};

test('the NVMe controller of the root filesystem is protected', (t) => {
  t.deepEqual(protectedBy('workstation', 'root-filesystem'), ['0000:02:00.0']);
});

test('the SAS controller of a POWER8 root filesystem is protected', (t) => {
  t.deepEqual(protectedBy('power8', 'root-filesystem'), ['0001:01:00.0']);
});

test('the root filesystem is found from mountinfo through /sys/dev/block', (t) => {
  t.deepEqual(rootFilesystem(createFixtureHost('workstation').fs), {
    block: '/sys/devices/pci0000:00/0000:00:1b.0/0000:02:00.0/nvme/nvme0/nvme0n1/nvme0n1p2',
    source: '/dev/nvme0n1p2',
  });
});

test('the NIC with the IPv4 default route is protected', (t) => {
  t.deepEqual(protectedBy('workstation', 'default-route'), ['0000:03:00.0']);
});

test('an IPv6 default route counts, the unreachable route on lo does not', (t) => {
  t.deepEqual(defaultRouteInterfaces(createFixtureHost('bridge-group').fs), ['eno1']);
});

test('a default route over a Linux bridge protects the NIC enslaved to it', (t) => {
  const host = createFixtureHost('workstation');
  // Move the route to br0 and enslave enp3s0, as a host set up for VMs has it.
  const root = host.root;
  fs.writeFileSync(
    path.join(root, 'proc/net/route'),
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nbr0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n',
  );
  fs.mkdirSync(path.join(root, 'sys/devices/virtual/net/br0/brif'), { recursive: true });
  fs.symlinkSync('../../devices/virtual/net/br0', path.join(root, 'sys/class/net/br0'));
  fs.symlinkSync('../../../../../pci0000:00/0000:00:1c.0/0000:03:00.0/net/enp3s0/brport', path.join(root, 'sys/devices/virtual/net/br0/brif/enp3s0'));
  t.deepEqual(
    findProtectedDevices(host.fs, discoverHost(host.fs)).filter((f) => f.rule === 'default-route').map((f) => f.detail),
    ['it carries the default route (br0)'],
  );
});

test('the boot VGA device is protected as the console display', (t) => {
  t.deepEqual(protectedBy('workstation', 'console-display'), ['0000:01:00.0']);
});

test('every bridge is protected', (t) => {
  t.deepEqual(protectedBy('bridge-group', 'bridge'), ['0000:00:1c.0', '0000:01:00.0']);
});

test('forcing one rule waives only that rule', (t) => {
  const host = createFixtureHost('workstation');
  const model = discoverHost(host.fs);
  const devices = [findDevice(model, '0000:01:00.0'), findDevice(model, '0000:02:00.0')];
  t.deepEqual(
    safetyViolations(findProtectedDevices(host.fs, model), devices, ['console-display']).map((f) => f.rule),
    ['root-filesystem'],
  );
});

test('force true waives every rule', (t) => {
  const host = createFixtureHost('workstation');
  const model = discoverHost(host.fs);
  t.deepEqual(safetyViolations(findProtectedDevices(host.fs, model), [findDevice(model, '0000:02:00.0')], true), []);
});

test('a root filesystem on LVM protects the controller under the device-mapper volume', (t) => {
  const host = createFixtureHost('workstation');
  const root = host.root;
  fs.writeFileSync(path.join(root, 'proc/self/mountinfo'), '26 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n');
  const dm = path.join(root, 'sys/devices/virtual/block/dm-1');
  fs.mkdirSync(path.join(dm, 'slaves'), { recursive: true });
  fs.mkdirSync(path.join(dm, 'dm'));
  fs.writeFileSync(path.join(dm, 'dm/name'), 'vg-root\n');
  fs.symlinkSync('../../../../pci0000:00/0000:00:1b.0/0000:02:00.0/nvme/nvme0/nvme0n1/nvme0n1p2', path.join(dm, 'slaves/nvme0n1p2'));
  fs.symlinkSync('../../devices/virtual/block/dm-1', path.join(root, 'sys/dev/block/253:1'));
  fs.symlinkSync('../../devices/virtual/block/dm-1', path.join(root, 'sys/class/block/dm-1'));
  t.deepEqual(
    findProtectedDevices(host.fs, discoverHost(host.fs)).filter((f) => f.rule === 'root-filesystem').map((f) => [f.address, f.detail]),
    [['0000:02:00.0', 'it serves the root filesystem (/ is /dev/mapper/vg-root)']],
  );
});

const findingsOf = (name: string, rule: string) => {
  const host = createFixtureHost(name);
  try {
    return findProtectedDevices(host.fs, discoverHost(host.fs)).filter((f) => f.rule === rule);
  } finally {
    fs.rmSync(host.root, { recursive: true, force: true });
  }
};

test('a controller under a mounted filesystem is found through LVM, md and a partition', (t) => {
  t.deepEqual(findingsOf('workstation', 'mounted-filesystem'), [
    { address: '0000:00:17.0', rule: 'mounted-filesystem', detail: 'it serves a mounted filesystem (/home is /dev/mapper/vg0-home)', override: '--force mounted-filesystem' },
  ]);
});

test('the controller of an active swap partition is protected, naming the partition', (t) => {
  t.deepEqual(findingsOf('workstation', 'swap'), [{ address: '0000:00:17.0', rule: 'swap', detail: 'it serves active swap (/dev/sda2)', override: '--force swap' }]);
});

test('a swap file is traced to the device of the mount that holds it', (t) => {
  const host = createFixtureHost('workstation');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  fs.writeFileSync(path.join(host.root, 'proc/swaps'), 'Filename\tType\tSize\tUsed\tPriority\n/home/swapfile                          file\t1048572\t0\t-2\n');
  t.deepEqual(activeSwap(host.fs).map((s) => s.name), ['swap file /home/swapfile on /dev/mapper/vg0-home']);
  t.deepEqual(findProtectedDevices(host.fs, discoverHost(host.fs)).filter((f) => f.rule === 'swap').map((f) => f.address), ['0000:00:17.0']);
});

test('an interface that is up with a route is protected as dpdk-devbind would, naming the route', (t) => {
  t.deepEqual(findingsOf('sriov-server', 'active-interface'), [
    { address: '0000:3b:00.1', rule: 'active-interface', detail: 'it drives ens1f1, which is up with a route to 10.0.1.0/24', override: '--force active-interface' },
  ]);
});

test('an interface that is down does not count as active, whatever its routes', (t) => {
  const host = createFixtureHost('sriov-server');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  const flags = path.join(host.root, 'sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1/net/ens1f1/flags');
  t.true(fs.existsSync(flags));
  fs.writeFileSync(flags, '0x1002\n');
  t.deepEqual(activeInterfaces(host.fs).map((a) => a.iface), ['eno1']);
});

test('a global IPv6 address alone makes an interface active; link-local routes do not', (t) => {
  const host = createFixtureHost('sriov-server');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  fs.writeFileSync(path.join(host.root, 'proc/net/route'), 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n');
  fs.writeFileSync(path.join(host.root, 'proc/net/ipv6_route'), 'fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eno1\n');
  t.deepEqual(activeInterfaces(host.fs), [{ iface: 'ens1f1', why: 'the address 2001:db8::5' }]);
});
