import test from 'ava';
import type { HostFs } from '@vfiokit/core';
import { createFixtureHost } from '@vfiokit/testkit';
import { devicesQemuResetsOnIncoming, resetMethodsOf } from './cpr-reset';

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

test('every marked function of a guest is named, in the order given, and the others are left out', (t) => {
  const host = createFixtureHost('workstation');
  const marked = devicesQemuResetsOnIncoming(host.fs, ['0000:00:14.0', '0000:04:00.0', '0000:00:00.0']);
  t.deepEqual(marked.map((m) => m.address), ['0000:00:14.0', '0000:00:00.0']);
});
