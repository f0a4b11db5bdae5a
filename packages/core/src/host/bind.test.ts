import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { temporaryFixtureDir, createFixtureHost, createFixtureHostFromSpec, errnoError, FIXTURE_HOSTS, openFixtureHost, type FixtureHost } from '@vfiokit/testkit';
import { bindGroup, groupHolders, planGroupBind, shellEcho, unbindGroup } from './bind';
import { discoverHost } from './discover';
import { fileBindingStore, type BindingStore } from './state';

const setUp = (name: string) => {
  const host = createFixtureHost(name);
  return { host, store: fileBindingStore(path.join(host.root, 'run/vfiokit')) };
};
const codeOf = (err: unknown) => (err as { code?: string }).code;

test('binding a group moves its device to vfio-pci through driver_override', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  t.deepEqual(host.deviceStates()['0000:04:00.0'], { driver: 'vfio-pci', driverOverride: 'vfio-pci' });
});

test('binding writes override, unbind and drivers_probe, in that order', (t) => {
  const { host, store } = setUp('workstation');
  t.deepEqual(bindGroup(host.fs, '0000:04:00.0', { store }).steps, [
    'echo vfio-pci > /sys/bus/pci/devices/0000:04:00.0/driver_override',
    'echo 0000:04:00.0 > /sys/bus/pci/devices/0000:04:00.0/driver/unbind',
    'echo 0000:04:00.0 > /sys/bus/pci/drivers_probe',
  ]);
});

test('clearing driver_override is shown as a bare echo, which writes the lone newline the kernel reads as none', (t) => {
  t.is(shellEcho('\n'), 'echo');
  t.is(shellEcho(''), 'echo');
});

test('a value with shell metacharacters is shown single-quoted', (t) => {
  t.is(shellEcho("a b'c"), `echo 'a b'\\''c'`);
});

test('binding remembers the original driver in the state folder', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  t.is(store.get('0000:04:00.0')?.originalDriver, 'xhci_hcd');
});

test('binding a group by number works like binding by address', (t) => {
  const { host, store } = setUp('workstation');
  t.deepEqual(bindGroup(host.fs, 11, { store }).changes, [{ address: '0000:04:00.0', from: 'xhci_hcd', to: 'vfio-pci' }]);
});

test('binding what is already bound writes nothing', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  const before = host.writes.length;
  bindGroup(host.fs, '0000:04:00.0', { store });
  t.is(host.writes.length, before);
});

test('binding what is already bound keeps the first record of the original driver', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  bindGroup(host.fs, '0000:04:00.0', { store });
  t.is(store.get('0000:04:00.0')?.originalDriver, 'xhci_hcd');
});

test('binding the GPU group moves both functions and leaves the root port on pcieport', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:01:00.1', { store, force: ['console-display'] });
  const s = host.deviceStates();
  t.deepEqual([s['0000:00:01.0']?.driver, s['0000:01:00.0']?.driver, s['0000:01:00.1']?.driver], ['pcieport', 'vfio-pci', 'vfio-pci']);
});

test('a bound group makes its /dev/vfio node appear', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  t.true(fs.existsSync(path.join(host.root, 'dev/vfio/11')));
});

test('unbinding gives each device back its original driver', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, 1, { store, force: true });
  unbindGroup(host.fs, 1, { store });
  const s = host.deviceStates();
  t.deepEqual([s['0000:01:00.0'], s['0000:01:00.1']], [{ driver: 'nouveau' }, { driver: 'snd_hda_intel' }]);
});

test('unbinding removes the records', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, 1, { store, force: true });
  unbindGroup(host.fs, 1, { store });
  t.deepEqual(store.list(), []);
});

test('unbinding in a new process reattaches from the records on disk', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  const later = openFixtureHost(host.root);
  unbindGroup(later.fs, '0000:04:00.0', { store: fileBindingStore(store.dir) });
  t.deepEqual(openFixtureHost(host.root).deviceStates()['0000:04:00.0'], { driver: 'xhci_hcd' });
});

test('unbinding what is not bound writes nothing', (t) => {
  const { host, store } = setUp('workstation');
  unbindGroup(host.fs, '0000:04:00.0', { store });
  t.deepEqual(host.writes, []);
});

test('unbinding a device vfiokit did not bind clears its override and lets the kernel choose', (t) => {
  const { host, store } = setUp('workstation');
  host.fs.writeText('/sys/bus/pci/devices/0000:04:00.0/driver_override', 'vfio-pci');
  host.fs.writeText('/sys/bus/pci/devices/0000:04:00.0/driver/unbind', '0000:04:00.0');
  host.fs.writeText('/sys/bus/pci/drivers_probe', '0000:04:00.0');
  unbindGroup(host.fs, '0000:04:00.0', { store });
  t.deepEqual(host.deviceStates()['0000:04:00.0'], { driver: 'xhci_hcd' });
});

test('unbinding restores a driver_override the device had before', (t) => {
  const { host, store } = setUp('workstation');
  host.fs.writeText('/sys/bus/pci/devices/0000:04:00.0/driver_override', 'xhci_hcd');
  bindGroup(host.fs, '0000:04:00.0', { store });
  unbindGroup(host.fs, '0000:04:00.0', { store });
  t.deepEqual(host.deviceStates()['0000:04:00.0'], { driver: 'xhci_hcd', driverOverride: 'xhci_hcd' });
});

test('a device that had no driver goes back to having none', (t) => {
  const { host, store } = setUp('power8');
  bindGroup(host.fs, '0002:01:00.0', { store });
  unbindGroup(host.fs, '0002:01:00.0', { store });
  t.deepEqual(host.deviceStates()['0002:01:00.0'], {});
});

test('a dry run plans the move and writes nothing', (t) => {
  const { host, store } = setUp('workstation');
  const r = bindGroup(host.fs, '0000:04:00.0', { store, dryRun: true });
  t.deepEqual([r.plan.devices, host.writes], [[{ address: '0000:04:00.0', action: 'bind', driver: 'xhci_hcd' }], []]);
});

test('the console GPU is refused without force, naming the rule and the override', (t) => {
  const { host, store } = setUp('workstation');
  const err = t.throws(() => bindGroup(host.fs, '0000:01:00.0', { store }));
  t.is(
    err?.message,
    "refusing to detach 0000:01:00.0 from nouveau: it drives the boot console (boot_vga = 1) (rule 'console-display'); override with --force console-display if the host can do without it",
  );
});

test('a refusal changes nothing', (t) => {
  const { host, store } = setUp('workstation');
  const before = host.deviceStates();
  t.throws(() => bindGroup(host.fs, '0000:01:00.0', { store }));
  t.deepEqual([host.deviceStates(), host.writes, store.list()], [before, [], []]);
});

test('the root filesystem controller is refused with code HOST_UNSAFE_DETACH', (t) => {
  const { host, store } = setUp('workstation');
  t.is(codeOf(t.throws(() => bindGroup(host.fs, '0000:02:00.0', { store }))), 'HOST_UNSAFE_DETACH');
});

test('the default-route NIC is refused under the default-route rule', (t) => {
  const { host, store } = setUp('workstation');
  t.is((t.throws(() => bindGroup(host.fs, '0000:03:00.0', { store })) as { rule?: string }).rule, 'default-route');
});

test('forcing the rule lets the root filesystem controller go', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:02:00.0', { store, force: ['root-filesystem'] });
  t.is(host.deviceStates()['0000:02:00.0']?.driver, 'vfio-pci');
});

test('the group behind a PCIe-to-PCI bridge binds its cards and leaves the bridge alone', (t) => {
  const { host, store } = setUp('bridge-group');
  const r = bindGroup(host.fs, '0000:02:02.0', { store });
  t.deepEqual(r.plan.devices.map((d) => [d.address, d.action]), [
    ['0000:01:00.0', 'leave'],
    ['0000:02:00.0', 'bind'],
    ['0000:02:01.0', 'bind'],
    ['0000:02:02.0', 'bind'],
  ]);
});

const shpchpBridgeHost = (): FixtureHost => {
  const spec = FIXTURE_HOSTS['bridge-group']!;
  const dir = temporaryFixtureDir('vfiokit-shpchp-');
  return createFixtureHostFromSpec(
    {
      ...spec,
      drivers: [...spec.drivers, 'shpchp'],
      devices: spec.devices.map((d) => (d.address === '0000:01:00.0' ? { ...d, driver: 'shpchp', native: 'shpchp' } : d)),
    },
    dir,
  );
};

test('a bridge held by a DMA-using driver is refused under the bridge rule', (t) => {
  const host = shpchpBridgeHost();
  const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
  t.is((t.throws(() => bindGroup(host.fs, 2, { store })) as { rule?: string }).rule, 'bridge');
});

test('a forced bridge is unbound and left without a driver, since vfio-pci refuses bridges', (t) => {
  const host = shpchpBridgeHost();
  const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
  bindGroup(host.fs, 2, { store, force: ['bridge'] });
  t.deepEqual(host.deviceStates()['0000:01:00.0'], { driverOverride: 'vfio-pci' });
});

test('a forced bridge gets its driver back on unbind', (t) => {
  const host = shpchpBridgeHost();
  const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
  bindGroup(host.fs, 2, { store, force: ['bridge'] });
  unbindGroup(host.fs, 2, { store });
  t.deepEqual(host.deviceStates()['0000:01:00.0'], { driver: 'shpchp' });
});

test('an SR-IOV physical function with VFs enabled is refused before anything changes', (t) => {
  const { host, store } = setUp('sriov-server');
  const err = t.throws(() => bindGroup(host.fs, '0000:3b:00.0', { store }));
  t.deepEqual([codeOf(err), host.writes], ['HOST_SRIOV_ENABLED', []]);
});

test('a virtual function binds to vfio-pci', (t) => {
  const { host, store } = setUp('sriov-server');
  bindGroup(host.fs, '0000:3b:02.1', { store });
  t.is(host.deviceStates()['0000:3b:02.1']?.driver, 'vfio-pci');
});

test('an unknown address is HOST_DEVICE_NOT_FOUND and writes nothing', (t) => {
  const { host, store } = setUp('workstation');
  const err = t.throws(() => bindGroup(host.fs, '0000:0a:00.0', { store }));
  t.deepEqual([codeOf(err), host.writes], ['HOST_DEVICE_NOT_FOUND', []]);
});

test('a malformed address is HOST_INVALID_ADDRESS and writes nothing', (t) => {
  const { host, store } = setUp('workstation');
  const err = t.throws(() => bindGroup(host.fs, 'gpu0', { store }));
  t.deepEqual([codeOf(err), host.writes], ['HOST_INVALID_ADDRESS', []]);
});

test('a group that does not exist is HOST_GROUP_NOT_FOUND', (t) => {
  const { host, store } = setUp('workstation');
  t.is(codeOf(t.throws(() => bindGroup(host.fs, 99, { store }))), 'HOST_GROUP_NOT_FOUND');
});

test('a host without an IOMMU refuses with HOST_NO_IOMMU', (t) => {
  const { host, store } = setUp('no-iommu');
  t.is(codeOf(t.throws(() => bindGroup(host.fs, '0000:00:14.0', { store }))), 'HOST_NO_IOMMU');
});

test('without vfio-pci loaded binding is refused with the modprobe hint', (t) => {
  const { host, store } = setUp('workstation');
  fs.rmSync(path.join(host.root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
  const err = t.throws(() => bindGroup(host.fs, '0000:04:00.0', { store })) as { code?: string; hint?: string };
  t.deepEqual([err.code, err.hint], ['HOST_VFIO_PCI_UNAVAILABLE', "load it with 'modprobe vfio-pci' and try again"]);
});

test('a device vanishing midway rolls the others back and says so', (t) => {
  const { host, store } = setUp('bridge-group');
  host.onWrite((file, data, h) => {
    if (file === '/sys/bus/pci/drivers_probe' && data === '0000:02:01.0') h.removeDevice('0000:02:01.0');
  });
  const err = t.throws(() => bindGroup(host.fs, 2, { store }));
  t.is(
    err?.message,
    'binding group 2 to vfio-pci failed: 0000:02:01.0 vanished from the host (hot-unplugged or removed) while moving 0000:02:01.0 to vfio-pci; put back 0000:02:00.0 to snd_emu10k1; 0000:02:01.0 left the host and needs nothing: the host is as it was',
  );
});

test('after a device vanishes midway the devices left are as they were', (t) => {
  const { host, store } = setUp('bridge-group');
  const before = host.deviceStates();
  host.onWrite((file, data, h) => {
    if (file === '/sys/bus/pci/drivers_probe' && data === '0000:02:01.0') h.removeDevice('0000:02:01.0');
  });
  t.throws(() => bindGroup(host.fs, 2, { store }));
  const { ['0000:02:01.0']: _gone, ...rest } = before;
  t.deepEqual([host.deviceStates(), store.list()], [rest, []]);
});

test('a failed unbind midway puts the first device back and fails with the errno', (t) => {
  const { host, store } = setUp('workstation');
  const before = host.deviceStates();
  host.onWrite((file) => {
    if (file === '/sys/bus/pci/devices/0000:01:00.1/driver/unbind') throw errnoError('EIO', file, 'injected');
  });
  const err = t.throws(() => bindGroup(host.fs, 1, { store, force: true })) as { code?: string; errno?: string };
  t.deepEqual([err.code, err.errno, host.deviceStates(), store.list()], ['HOST_BIND_FAILED', 'EIO', before, []]);
});

test('a rollback that fails too is HOST_ROLLBACK_FAILED', (t) => {
  const { host, store } = setUp('workstation');
  host.onWrite((file) => {
    if (file.endsWith('0000:01:00.1/driver/unbind') || file === '/sys/bus/pci/drivers/nouveau/bind') throw errnoError('EIO', file, 'injected');
  });
  host.onWrite((file, data) => {
    if (file === '/sys/bus/pci/drivers_probe' && data === '0000:01:00.0' && host.deviceStates()['0000:01:00.0']?.driverOverride === undefined) {
      throw errnoError('EIO', file, 'injected');
    }
  });
  t.is(codeOf(t.throws(() => bindGroup(host.fs, 1, { store, force: true }))), 'HOST_ROLLBACK_FAILED');
});

test('a failed release puts the released devices back on vfio-pci', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, 1, { store, force: true });
  host.onWrite((file) => {
    if (file === '/sys/bus/pci/devices/0000:01:00.1/driver/unbind') throw errnoError('EBUSY', file, 'injected');
  });
  const err = t.throws(() => unbindGroup(host.fs, 1, { store }));
  const s = host.deviceStates();
  t.deepEqual([codeOf(err), s['0000:01:00.0']?.driver, s['0000:01:00.1']?.driver], ['HOST_BIND_FAILED', 'vfio-pci', 'vfio-pci']);
});

test('releasing a group a process holds open is refused, naming the process', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  fs.mkdirSync(path.join(host.root, 'proc/4242/fd'), { recursive: true });
  fs.writeFileSync(path.join(host.root, 'proc/4242/comm'), 'qemu-system-x86\n');
  fs.symlinkSync('/dev/vfio/11', path.join(host.root, 'proc/4242/fd/7'));
  const err = t.throws(() => unbindGroup(host.fs, '0000:04:00.0', { store }));
  t.is(err?.message, 'group 11 is open in qemu-system-x86 (pid 4242): releasing it now would hang until they close it');
});

test('a record written for another card in the same slot is ignored', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  store.put({ ...store.get('0000:04:00.0')!, deviceId: 0x1242, originalDriver: 'some_other_driver' });
  unbindGroup(host.fs, '0000:04:00.0', { store });
  t.is(host.deviceStates()['0000:04:00.0']?.driver, 'xhci_hcd');
});

test('planning reports the safety refusals without writing', (t) => {
  const { host } = setUp('workstation');
  t.deepEqual(planGroupBind(host.fs, discoverHost(host.fs), 6).refusals.map((f) => f.rule), ['root-filesystem']);
});

test('a managed release leaves devices vfiokit did not bind on vfio-pci', (t) => {
  const { host, store } = setUp('bridge-group');
  host.fs.writeText('/sys/bus/pci/devices/0000:02:02.0/driver_override', 'vfio-pci');
  host.fs.writeText('/sys/bus/pci/drivers_probe', '0000:02:02.0');
  bindGroup(host.fs, 2, { store });
  unbindGroup(host.fs, 2, { store, onlyRecorded: true });
  const s = host.deviceStates();
  t.deepEqual([s['0000:02:00.0']?.driver, s['0000:02:01.0']?.driver, s['0000:02:02.0']?.driver], ['snd_emu10k1', 'firewire_ohci', 'vfio-pci']);
});

test('a release limited to some devices leaves the other vfio-pci devices of the group bound', (t) => {
  const { host, store } = setUp('bridge-group');
  bindGroup(host.fs, 2, { store });
  const r = unbindGroup(host.fs, 2, { store, onlyRecorded: true, devices: ['0000:02:00.0'] });
  t.deepEqual(r.changes.map((c) => c.address), ['0000:02:00.0']);
  const s = host.deviceStates();
  t.deepEqual([s['0000:02:00.0']?.driver, s['0000:02:01.0']?.driver, s['0000:02:02.0']?.driver], ['snd_emu10k1', 'vfio-pci', 'vfio-pci']);
});

test('a host booted with intel_iommu=off is told so, with the fix', (t) => {
  const { host, store } = setUp('no-iommu');
  const err = t.throws(() => bindGroup(host.fs, '0000:00:14.0', { store })) as { message: string; hint?: string };
  t.deepEqual(
    [err.message, err.hint],
    [
      '0000:00:14.0 has no IOMMU group: this host has no IOMMU enabled (the kernel was booted with intel_iommu=off), so VFIO cannot take it',
      'remove intel_iommu=off from the kernel command line, boot with intel_iommu=on, and reboot',
    ],
  );
});

test('a switch a dead vfiokit left half-way is finished with the driver it recorded', (t) => {
  const { host, store } = setUp('workstation');
  bindGroup(host.fs, '0000:04:00.0', { store });
  // As if a process died after unbinding: override set, no driver, record kept.
  host.fs.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:04:00.0');
  bindGroup(host.fs, '0000:04:00.0', { store });
  unbindGroup(host.fs, '0000:04:00.0', { store });
  t.deepEqual(host.deviceStates()['0000:04:00.0'], { driver: 'xhci_hcd' });
});

test('a state folder that cannot be written midway puts the moved devices back', (t) => {
  const { host, store } = setUp('workstation');
  const before = host.deviceStates();
  let puts = 0;
  const failing: BindingStore = {
    ...store,
    put(record) {
      if (++puts === 2) throw new Error('disk full');
      store.put(record);
    },
  };
  t.throws(() => bindGroup(host.fs, 1, { store: failing, force: true }));
  t.deepEqual(host.deviceStates(), before);
});

test('a bound group reports nothing still blocking it', (t) => {
  const { host, store } = setUp('workstation');
  t.deepEqual(bindGroup(host.fs, '0000:04:00.0', { store }).stillBlocking, []);
});

test('the processes holding a group open are listed with their names', (t) => {
  const { host } = setUp('workstation');
  fs.mkdirSync(path.join(host.root, 'proc/4242/fd'), { recursive: true });
  fs.writeFileSync(path.join(host.root, 'proc/4242/comm'), 'qemu-system-x86\n');
  fs.symlinkSync('/dev/vfio/11', path.join(host.root, 'proc/4242/fd/7'));
  t.deepEqual(groupHolders(host.fs, 11), [{ pid: 4242, comm: 'qemu-system-x86' }]);
});

test('a host in vfio unsafe no-IOMMU mode is refused, saying so', (t) => {
  const { host, store } = setUp('no-iommu');
  fs.mkdirSync(path.join(host.root, 'sys/module/vfio/parameters'), { recursive: true });
  fs.writeFileSync(path.join(host.root, 'sys/module/vfio/parameters/enable_unsafe_noiommu_mode'), 'Y\n');
  const err = t.throws(() => bindGroup(host.fs, '0000:00:14.0', { store }));
  t.is(
    err?.message,
    '0000:00:14.0 has no IOMMU group: vfio is in unsafe no-IOMMU mode, where a device gets no DMA isolation; vfiokit does not manage devices that way',
  );
});
