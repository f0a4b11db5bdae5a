import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { assertLockedMemory, checkLockedMemory, formatBytes, hasCapIpcLock, memlockForVmm, pinnedBytesFor, readLockedMemoryLimit } from './memlock';
import { memlockFromHost } from '../dma/topology';
import { MemlockTooLowError } from './errors';

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

/** A fixture host whose process has these limits (bytes; undefined = unlimited) and capabilities. */
function withLimits(soft: bigint | undefined, hard: bigint | undefined, capEff = '0000000000000000') {
  const fs = createFixtureHost('workstation').fs;
  const col = (v: bigint | undefined) => (v === undefined ? 'unlimited' : String(v)).padEnd(21);
  return {
    ...fs,
    readText: (file: string) =>
      file === '/proc/self/limits'
        ? `Limit                     Soft Limit           Hard Limit           Units     \nMax locked memory         ${col(soft)}${col(hard)}bytes     \n`
        : file === '/proc/self/status'
          ? `Name:\tvfiokit\nCapEff:\t${capEff}\n`
          : fs.readText(file),
  };
}

test('a VMM vfiokit starts keeps an inherited RLIMIT_MEMLOCK that covers the guest', (t) => {
  const m = memlockForVmm(withLimits(8n * GiB, 8n * GiB), 5n * GiB);
  t.is(m.raiseTo, undefined);
  t.is(m.reason, 'RLIMIT_MEMLOCK 8 GiB covers the 5 GiB needed');
});

test('a VMM vfiokit starts gets its soft RLIMIT_MEMLOCK raised to the need when the hard limit allows', (t) => {
  const m = memlockForVmm(withLimits(64n << 10n, undefined), 5n * GiB);
  t.deepEqual(m.raiseTo, { soft: 5n * GiB, hard: undefined });
});

test('with CAP_SYS_RESOURCE both RLIMIT_MEMLOCK limits are raised past a low hard limit', (t) => {
  const m = memlockForVmm(withLimits(8n << 20n, 8n << 20n, '0000000001000000'), 5n * GiB);
  t.deepEqual(m.raiseTo, { soft: 5n * GiB, hard: 5n * GiB });
});

test('CAP_IPC_LOCK leaves a low RLIMIT_MEMLOCK as it is, since VFIO does not enforce it', (t) => {
  const m = memlockForVmm(withLimits(8n << 20n, 8n << 20n, '0000000000004000'), 5n * GiB);
  t.is(m.raiseTo, undefined);
});

test('a hard RLIMIT_MEMLOCK below the need, without CAP_SYS_RESOURCE, is refused with the number of bytes', (t) => {
  const err = t.throws(() => memlockForVmm(withLimits(8n << 20n, 16n << 20n), 5n * GiB), { instanceOf: MemlockTooLowError });
  t.is(err.code, 'HOST_MEMLOCK_TOO_LOW');
  t.regex(err.message, /needs RLIMIT_MEMLOCK of 5368709120 bytes .* but the hard limit is 16777216 bytes \(16 MiB\)/);
  t.regex(err.hint!, /ulimit -Hl 5242880/);
});
