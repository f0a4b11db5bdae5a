import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { resetFunction, workingResetMethods } from './reset';

test('a function with a reset method is reset through its reset attribute', (t) => {
  const host = createFixtureHost('sriov-server');
  const r = resetFunction(host.fs, '0000:3b:02.0');
  t.deepEqual(r, { address: '0000:3b:02.0', done: true, methods: ['flr'], step: 'echo 1 > /sys/bus/pci/devices/0000:3b:02.0/reset' });
  t.deepEqual(host.resets, ['0000:3b:02.0']);
});

test('a function without a reset method is not reset, and the reason says the kernel offers none', (t) => {
  const host = createFixtureHost('workstation');
  // The host bridge has no reset_method in the fixture, as on real hardware.
  const r = resetFunction(host.fs, '0000:00:00.0');
  t.false(r.done);
  t.deepEqual(r.methods, []);
  t.regex(r.reason!, /^the kernel offers no reset for it/);
  t.deepEqual(host.resets, []);
});

test('a reset the kernel refuses is reported with its errno, not thrown', (t) => {
  const host = createFixtureHost('sriov-server');
  host.onWrite((file) => {
    if (file.endsWith('/reset')) throw Object.assign(new Error('EBUSY: device busy'), { code: 'EBUSY' });
  });
  const r = resetFunction(host.fs, '0000:3b:02.0');
  t.false(r.done);
  t.regex(r.reason!, /^the kernel refused the reset with EBUSY/);
});

test('a bus reset counts only while the function is alone on its bus, as pci_parent_bus_reset decides at open', (t) => {
  // The x86 lab: bridge-a (01:01.0) was probed alone and lists `bus`, but bridge-b (01:02.0) joined its bus.
  const lab = ['0000:00:03.0', '0000:00:04.0', '0000:01:01.0', '0000:01:02.0', '0000:00:07.0', '0000:04:00.0'];
  t.deepEqual(workingResetMethods('0000:01:01.0', ['bus'], lab), []);
  t.deepEqual(workingResetMethods('0000:04:00.0', ['bus'], lab), ['bus']);
  // Other methods do not depend on the bus; the list keeps its order.
  t.deepEqual(workingResetMethods('0000:01:01.0', ['flr', 'pm', 'bus'], lab), ['flr', 'pm']);
  // Another domain's bus of the same number is another bus.
  t.deepEqual(workingResetMethods('0000:04:00.0', ['bus'], [...lab, '0001:04:00.0']), ['bus']);
  t.deepEqual(workingResetMethods('0000:04:00.0', [], lab), []);
});
