import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost, findDevice } from './discover';
import { defaultRouteInterfaces, findProtectedDevices, rootFilesystem, safetyViolations } from './safety';

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
  fs.writeFileSync(path.join(root, 'proc/self/mountinfo'), '26 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n');
  const dm = path.join(root, 'sys/devices/virtual/block/dm-0');
  fs.mkdirSync(path.join(dm, 'slaves'), { recursive: true });
  fs.mkdirSync(path.join(dm, 'dm'));
  fs.writeFileSync(path.join(dm, 'dm/name'), 'vg-root\n');
  fs.symlinkSync('../../../../pci0000:00/0000:00:1b.0/0000:02:00.0/nvme/nvme0/nvme0n1/nvme0n1p2', path.join(dm, 'slaves/nvme0n1p2'));
  fs.symlinkSync('../../devices/virtual/block/dm-0', path.join(root, 'sys/dev/block/253:0'));
  fs.symlinkSync('../../devices/virtual/block/dm-0', path.join(root, 'sys/class/block/dm-0'));
  t.deepEqual(
    findProtectedDevices(host.fs, discoverHost(host.fs)).filter((f) => f.rule === 'root-filesystem').map((f) => [f.address, f.detail]),
    [['0000:02:00.0', 'it serves the root filesystem (/ is /dev/mapper/vg-root)']],
  );
});
