import test from 'ava';
import type { HostFs } from '@vfiokit/core';
import { createFixtureHost } from '@vfiokit/testkit';
import { devicesCprTransferNeedsKvmFor, devicesQemuResetsOnIncoming, resetMethodsOf } from './cpr-reset';

test('a function without reset_method is marked: the kernel offers no reset, so VFIO reports it without VFIO_DEVICE_FLAGS_RESET', (t) => {
  const host = createFixtureHost('workstation');
  // The host bridge has no reset method in the fixture, as edu has none in the lab.
  t.deepEqual(resetMethodsOf(host.fs, '0000:00:00.0'), []);
  const [m, ...rest] = devicesQemuResetsOnIncoming(host.fs, ['0000:00:00.0']);
  t.deepEqual(rest, []);
  t.is(m!.address, '0000:00:00.0');
  t.deepEqual(m!.methods, []);
  t.regex(m!.cause, /^the kernel offers no reset for it \(no reset_method: VFIO reports it without VFIO_DEVICE_FLAGS_RESET\)$/);
});

test('a function whose only function-level reset is a PM reset is marked, as QEMU marks a PM reset without FLR', (t) => {
  const host = createFixtureHost('workstation');
  const marked = devicesQemuResetsOnIncoming(host.fs, ['0000:00:14.0']);
  t.deepEqual(marked, [{ address: '0000:00:14.0', methods: ['pm'], cause: 'its only function-level reset is a PM reset, without FLR (reset_method: pm)' }]);
});

test('functions with FLR are not marked, with or without a bus reset after it', (t) => {
  const host = createFixtureHost('sriov-server');
  t.deepEqual(resetMethodsOf(host.fs, '0000:3b:02.0'), ['flr']);
  t.deepEqual(resetMethodsOf(host.fs, '0000:3b:00.0'), ['flr', 'bus']);
  t.deepEqual(devicesQemuResetsOnIncoming(host.fs, ['0000:3b:02.0', '0000:3b:02.1', '0000:3b:00.0']), []);
});

test('an advanced-features FLR counts as FLR, even with a PM reset beside it', (t) => {
  const host = createFixtureHost('workstation');
  // No fixture device has an AF FLR (and the fixture kernel has no
  // reset_method store): the xHCI controller's list, read as if it had one.
  const file = '/sys/bus/pci/devices/0000:00:14.0/reset_method';
  const fs: HostFs = Object.assign(Object.create(host.fs) as HostFs, { readText: (path: string) => (path === file ? 'af_flr pm\n' : host.fs.readText(path)) });
  t.deepEqual(resetMethodsOf(fs, '0000:00:14.0'), ['af_flr', 'pm']);
  t.deepEqual(devicesQemuResetsOnIncoming(fs, ['0000:00:14.0']), []);
});

test('a function with only a bus reset is not marked: the kernel can reset it and QEMU sees neither FLR nor a PM reset', (t) => {
  const host = createFixtureHost('workstation');
  t.deepEqual(resetMethodsOf(host.fs, '0000:04:00.0'), ['bus']);
  t.deepEqual(devicesQemuResetsOnIncoming(host.fs, ['0000:04:00.0']), []);
});

test('a function whose only reset is a bus reset is marked once another function shares its bus: reset_method was probed while it was alone', (t) => {
  // The x86 lab's bridge-a: first on its PCIe-to-PCI bridge's bus, it lists
  // `bus`, but bridge-b joined the bus and VFIO reports it without RESET.
  const host = createFixtureHost('workstation');
  const devices = '/sys/bus/pci/devices';
  const fs: HostFs = Object.assign(Object.create(host.fs) as HostFs, { list: (dir: string) => (dir === devices ? [...host.fs.list(dir), '0000:04:00.1'].sort() : host.fs.list(dir)) });
  t.deepEqual(devicesQemuResetsOnIncoming(fs, ['0000:04:00.0']), [
    {
      address: '0000:04:00.0',
      methods: ['bus'],
      cause: 'its only reset is a bus reset, and other functions share its bus now (reset_method: bus, probed when it was alone): VFIO reports it without VFIO_DEVICE_FLAGS_RESET',
    },
  ]);
});

test('every marked function of a guest is named, in the order given, and the others are left out', (t) => {
  const host = createFixtureHost('workstation');
  const marked = devicesQemuResetsOnIncoming(host.fs, ['0000:00:14.0', '0000:04:00.0', '0000:00:00.0']);
  t.deepEqual(marked.map((m) => m.address), ['0000:00:14.0', '0000:00:00.0']);
});

/** `host`'s file system with `address`'s config space replaced: 256 bytes, an interrupt pin, and the capabilities given (MSI 0x05, MSI-X 0x11). */
function withConfig(host: HostFs, address: string, pin: number, caps: readonly number[]): HostFs {
  const config = new Uint8Array(256);
  config.set([0x34, 0x12, 0xe8, 0x11]); // edu's 1234:11e8
  config[0x3d] = pin;
  if (caps.length > 0) {
    config[0x06] = 0x10; // PCI_STATUS_CAP_LIST
    config[0x34] = 0x40;
    caps.forEach((id, i) => {
      config[0x40 + i * 0x10] = id;
      config[0x41 + i * 0x10] = i + 1 < caps.length ? 0x50 + i * 0x10 : 0;
    });
  }
  const file = `/sys/bus/pci/devices/${address}/config`;
  return Object.assign(Object.create(host) as HostFs, { readBytes: (path: string, length: number) => (path === file ? config.slice(0, length) : host.readBytes(path, length)) });
}

test('without KVM, a device with an interrupt pin or MSI is named with what it has, as QEMU moves those interrupts into KVM when a cpr-transfer starts', (t) => {
  const host = createFixtureHost('workstation').fs;
  // The lab's edu: INTA and an MSI capability.
  const edu = withConfig(host, '0000:04:00.0', 1, [0x05]);
  t.deepEqual(devicesCprTransferNeedsKvmFor(edu, ['0000:04:00.0']), [{ address: '0000:04:00.0', interrupts: 'an interrupt pin (INTx), MSI' }]);
  // An SR-IOV VF: no pin (VFs have no INTx), MSI-X the guest may enable at any time.
  const vf = withConfig(host, '0000:04:00.0', 0, [0x10, 0x11]);
  t.deepEqual(devicesCprTransferNeedsKvmFor(vf, ['0000:04:00.0']), [{ address: '0000:04:00.0', interrupts: 'MSI-X' }]);
});

test('without KVM, a device with neither an interrupt pin nor MSI/MSI-X is not named: QEMU skips it', (t) => {
  const host = withConfig(createFixtureHost('workstation').fs, '0000:04:00.0', 0, [0x01]);
  t.deepEqual(devicesCprTransferNeedsKvmFor(host, ['0000:04:00.0']), []);
});

test('a device whose config space cannot be read is assumed to have interrupts', (t) => {
  const host = createFixtureHost('workstation').fs;
  const fs: HostFs = Object.assign(Object.create(host) as HostFs, { readBytes: () => undefined });
  t.deepEqual(devicesCprTransferNeedsKvmFor(fs, ['0000:04:00.0']), [{ address: '0000:04:00.0', interrupts: 'interrupts (its config space is unreadable)' }]);
});
