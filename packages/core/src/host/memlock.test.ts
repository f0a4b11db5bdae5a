import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { assertLockedMemory, checkLockedMemory, formatBytes, hasCapIpcLock, pinnedBytesFor, readLockedMemoryLimit } from './memlock';
import { memlockFromHost } from '../dma/topology';

const GiB = 1n << 30n;

test('RLIMIT_MEMLOCK is read from /proc/self/limits', (t) => {
  t.deepEqual(readLockedMemoryLimit(createFixtureHost('workstation').fs), { soft: 8388608n, hard: 8388608n });
});

test('an unlimited RLIMIT_MEMLOCK reads as undefined', (t) => {
  t.deepEqual(readLockedMemoryLimit(createFixtureHost('sriov-server').fs), { soft: undefined, hard: undefined });
});

test('CAP_IPC_LOCK is read from CapEff', (t) => {
  t.deepEqual([hasCapIpcLock(createFixtureHost('bridge-group').fs), hasCapIpcLock(createFixtureHost('workstation').fs)], [true, false]);
});

test('a guest without an IOMMU pins all its RAM once', (t) => {
  t.is(pinnedBytesFor({ guestMemoryBytes: 4n * GiB, groups: 3 }), 4n * GiB);
});

test('a guest with an IOMMU present but off still pins all its RAM once', (t) => {
  t.is(pinnedBytesFor({ guestMemoryBytes: 4n * GiB, groups: 3, guestIommu: 'present-disabled' }), 4n * GiB);
});

test('behind an enabled vIOMMU each group is charged separately', (t) => {
  t.is(pinnedBytesFor({ guestMemoryBytes: 4n * GiB, groups: 3, guestIommu: 'enabled' }), 12n * GiB);
});

test('sPAPR charges registered memory once per process', (t) => {
  t.is(pinnedBytesFor({ guestMemoryBytes: 4n * GiB, groups: 3, guestIommu: 'enabled', platform: 'power' }), 4n * GiB);
});

test('an 8 MiB limit is too low for a 4 GiB guest, and the number to raise it to is RAM plus 1 GiB', (t) => {
  const r = checkLockedMemory(createFixtureHost('workstation').fs, { guestMemoryBytes: 4n * GiB });
  t.deepEqual([r.ok, r.requiredBytes], [false, 5n * GiB]);
});

test('the hints give the exact number in each tool\'s unit', (t) => {
  const r = checkLockedMemory(createFixtureHost('workstation').fs, { guestMemoryBytes: 4n * GiB });
  t.deepEqual(r.hints, [
    'the hard limit (8388608 bytes) is below it too: only root can raise it (ulimit -Hl 5242880 as root, or limits.conf)',
    'for this shell: ulimit -l 5242880',
    "for a user's logins, in /etc/security/limits.conf: USER soft memlock 5242880 and USER hard memlock 5242880",
    'for a systemd service: LimitMEMLOCK=5368709120 in its [Service] section',
    'for a running process: prlimit --memlock=5368709120:5368709120 --pid PID',
  ]);
});

test('an unlimited limit is fine', (t) => {
  t.true(checkLockedMemory(createFixtureHost('sriov-server').fs, { guestMemoryBytes: 256n * GiB }).ok);
});

test('CAP_IPC_LOCK makes a low limit fine and says why', (t) => {
  const r = checkLockedMemory(createFixtureHost('bridge-group').fs, { guestMemoryBytes: 4n * GiB });
  t.deepEqual([r.ok, r.reason.includes('CAP_IPC_LOCK')], [true, true]);
});

test('a too-low limit is HOST_MEMLOCK_TOO_LOW with the required bytes in the message', (t) => {
  const err = t.throws(() => assertLockedMemory(createFixtureHost('power8').fs, { guestMemoryBytes: 2n * GiB, platform: 'power' }));
  t.is(
    err?.message,
    'RLIMIT_MEMLOCK is 64 KiB but the assignment pins 2 GiB (3 GiB with headroom): VFIO_IOMMU_MAP_DMA would fail with ENOMEM; raise it to 3221225472 bytes',
  );
});

test('byte counts read in binary units', (t) => {
  t.deepEqual([formatBytes(8388608n), formatBytes(5n * GiB + GiB / 2n), formatBytes(512n)], ['8 MiB', '5.5 GiB', '512 bytes']);
});

test('the too-low error hints ulimit and LimitMEMLOCK with the exact numbers', (t) => {
  const err = t.throws(() => assertLockedMemory(createFixtureHost('workstation').fs, { guestMemoryBytes: 4n * GiB })) as { hint?: string };
  t.is(err.hint, "ulimit -l 5242880 in the VMM's shell, or LimitMEMLOCK=5368709120 for a systemd service");
});

test("the planner's memlock limit is the host's soft RLIMIT_MEMLOCK and CAP_IPC_LOCK, unlimited read as 'unlimited'", (t) => {
  t.deepEqual(memlockFromHost(createFixtureHost('workstation').fs), { soft: 8388608n, capIpcLock: false });
  t.deepEqual(memlockFromHost(createFixtureHost('sriov-server').fs), { soft: 'unlimited', capIpcLock: false });
});
