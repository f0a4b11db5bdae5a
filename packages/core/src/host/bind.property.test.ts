// Properties of managed bind/unbind under injected faults: whichever single
// sysfs write fails, and with whatever errno, the operation either completes
// or leaves every device exactly as it was, with no records left behind.
import * as path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { createFixtureHost, errnoError } from '@vfiokit/testkit';
import { bindGroup, unbindGroup } from './bind';
import { fileBindingStore } from './state';

const ERRNOS = ['EIO', 'EBUSY', 'ENODEV', 'EINVAL', 'ENOMEM'] as const;
const TARGETS = [
  { fixture: 'workstation', group: 1 },
  { fixture: 'bridge-group', group: 2 },
  { fixture: 'workstation', group: 9 },
] as const;

const fault = fc.record({
  target: fc.constantFrom(...TARGETS),
  failAt: fc.nat({ max: 12 }),
  errno: fc.constantFrom(...ERRNOS),
});

test('a bind with one failing write completes or changes nothing', (t) => {
  fc.assert(
    fc.property(fault, ({ target, failAt, errno }) => {
      const host = createFixtureHost(target.fixture);
      const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
      const before = host.deviceStates();
      let n = 0;
      host.onWrite((file) => {
        if (n++ === failAt) throw errnoError(errno, file, 'injected');
      });
      try {
        bindGroup(host.fs, target.group, { store, force: true });
      } catch (err) {
        const code = (err as { code?: string }).code;
        return code === 'HOST_BIND_FAILED' && JSON.stringify(host.deviceStates()) === JSON.stringify(before) && store.list().length === 0;
      }
      const s = host.deviceStates();
      return host.fs.list(`/sys/kernel/iommu_groups/${target.group}/devices`).every((a) => {
        const bridge = host.fs.readBytes(`/sys/bus/pci/devices/${a}/config`, 16)![14]! & 0x7f;
        return bridge !== 0 || s[a]?.driver === 'vfio-pci';
      });
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test('a release with one failing write completes or leaves the group on vfio-pci', (t) => {
  fc.assert(
    fc.property(fault, ({ target, failAt, errno }) => {
      const host = createFixtureHost(target.fixture);
      const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
      const original = host.deviceStates();
      bindGroup(host.fs, target.group, { store, force: true });
      const bound = host.deviceStates();
      const records = store.list().length;
      let n = 0;
      host.onWrite((file) => {
        if (n++ === failAt) throw errnoError(errno, file, 'injected');
      });
      try {
        unbindGroup(host.fs, target.group, { store });
      } catch (err) {
        const code = (err as { code?: string }).code;
        return code === 'HOST_BIND_FAILED' && JSON.stringify(host.deviceStates()) === JSON.stringify(bound) && store.list().length === records;
      }
      return JSON.stringify(host.deviceStates()) === JSON.stringify(original) && store.list().length === 0;
    }),
    { numRuns: 30 },
  );
  t.pass();
});

const twoFaults = fc.record({
  target: fc.constantFrom(...TARGETS),
  failAt: fc.uniqueArray(fc.nat({ max: 16 }), { minLength: 2, maxLength: 2 }),
  errno: fc.constantFrom(...ERRNOS),
});

test('with two failing writes a bind never claims the host is as it was when it is not', (t) => {
  fc.assert(
    fc.property(twoFaults, ({ target, failAt, errno }) => {
      const host = createFixtureHost(target.fixture);
      const store = fileBindingStore(path.join(host.root, 'run/vfiokit'));
      const before = JSON.stringify(host.deviceStates());
      let n = 0;
      host.onWrite((file) => {
        if (failAt.includes(n++)) throw errnoError(errno, file, 'injected');
      });
      try {
        bindGroup(host.fs, target.group, { store, force: true });
        return true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        // HOST_BIND_FAILED promises the host is as it was; HOST_ROLLBACK_FAILED says it is not.
        return code === 'HOST_ROLLBACK_FAILED' || (code === 'HOST_BIND_FAILED' && JSON.stringify(host.deviceStates()) === before);
      }
    }),
    { numRuns: 30 },
  );
  t.pass();
});
