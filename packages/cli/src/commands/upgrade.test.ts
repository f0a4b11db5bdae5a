// `vfiokit upgrade` against real QEMUs: 11.1 (Debian sid's, run from the sid
// root scripts/fetch-qemu.sh sid makes) hands a running TCG guest to a new
// 11.1 process by cpr-transfer; 7.2 (the system's) and 10.0 (bookworm-
// backports') are refused with the version cpr-transfer with VFIO needs.
// As in run.test.ts the host is simulated and a stand-in drops the vfio-pci
// devices QEMU could not open here, so this is cpr-transfer of the guest's
// RAM and machine; with a VFIO device it is the lab's to show.
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { connectQmp, queryStatus } from '@vfiokit/qemu-bridge';
import { eventually, processAlive, processesMentioning, qemuBuild } from '@vfiokit/testkit';
import { EXAMPLES, parseJson, startVfiokit, vfiokit } from '../testing/run-cli';
import { writeStandInQemu } from '../testing/stand-in-qemu';
import { assertDocument } from '../json-schema';
import type { UpgradeReport } from './upgrade';

const SPEC = join(EXAMPLES, 'sriov-vfs-viommu.yaml');
const GUEST = 'nfv-guest';

/** A simulated host, a TMPDIR of the run's own, and stand-ins for each QEMU asked for. */
function setup(t: ExecutionContext, versions: readonly string[]): { host: string; tmp: string; qemu: Record<string, string>; args: (...rest: string[]) => string[] } {
  const base = mkdtempSync(join(tmpdir(), 'vfiokit-upgrade-test-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const tmp = join(base, 'tmp');
  mkdirSync(tmp);
  const qemu: Record<string, string> = {};
  for (const v of versions) {
    const path = writeStandInQemu(join(base, `qemu-${v}`), qemuBuild(v).binary);
    qemu[v] = path;
  }
  return { host: join(base, 'host'), tmp, qemu, args: (...rest) => ['--mock', 'sriov-server', '--mock-dir', join(base, 'host'), ...rest] };
}

async function startRun(t: ExecutionContext, tmp: string, args: string[]) {
  const run = startVfiokit(args, { env: { TMPDIR: tmp } });
  t.teardown(() => {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  });
  const [, pid, qmp] = (await run.waitForStdout(/QEMU is running \(pid (\d+)\), QMP monitor at (\S+);/))!;
  return { run, pid: Number(pid), qmp: qmp! };
}

async function nothingLeft(tmp: string): Promise<void> {
  await eventually(() => processesMentioning(tmp).length === 0, `no process names ${tmp}: ${JSON.stringify(processesMentioning(tmp))}`);
  await eventually(() => readdirSync(tmp).length === 0, `${tmp} is empty: ${readdirSync(tmp).join(', ')}`);
}

test('upgrade hands a running guest from QEMU 11.1 to a new 11.1 process: the old one exits, the new one runs the guest at the same monitor, and the run ends with it', async (t) => {
  t.timeout(280_000);
  const { tmp, qemu, args } = setup(t, ['11.1']);
  const { run, pid: oldPid, qmp } = await startRun(t, tmp, args('run', '--accel', 'tcg', '--qemu', qemu['11.1']!, SPEC, '--', '-display', 'none'));
  const up = await vfiokit(['--json', ...args('upgrade', GUEST)], { env: { TMPDIR: tmp } });
  t.is(up.code, 0, up.stderr);
  const report = parseJson<UpgradeReport>(up);
  t.notThrows(() => assertDocument('upgrade', report), 'the report validates against the upgrade schema');
  t.is(report.old.pid, oldPid);
  t.is(report.old.exitCode, 0);
  t.is(report.new.version, report.old.version);
  t.is(report.new.status, 'running');
  t.regex(report.machine, /^pc-q35-11\.1$/);
  t.true(report.new.argv.includes('-incoming'));
  t.true(report.new.argv.some((a) => a.includes(`${report.machine},`)), 'the new QEMU runs the old one\'s resolved machine type');
  t.true(report.new.argv.some((a) => a.startsWith('memory-backend-memfd,') && a.includes('share=on')));
  t.false(processAlive(oldPid), 'the old QEMU is gone');
  t.true(processAlive(report.new.pid), 'the new QEMU runs');
  // The operator's monitor path now leads to the new QEMU, whose guest runs.
  const session = await connectQmp({ path: qmp });
  t.deepEqual(await queryStatus(session), { status: 'running', running: true });
  await session.close();
  // The run waits on the new QEMU now: it ends when that one does.
  process.kill(report.new.pid, 'SIGTERM');
  const ended = await run.ended;
  t.is(ended.code, 0, ended.stderr);
  t.regex(ended.stdout, /new QEMU \(pid \d+\) runs the guest \(running\); query-migrate downtime \d+ ms/);
  t.regex(ended.stdout, /QEMU exited with 0\n/);
  await nothingLeft(tmp);
});

test('upgrade refuses a guest running under QEMU 7.2, saying cpr-transfer with VFIO needs 10.1, and the guest runs on', async (t) => {
  t.timeout(200_000);
  const { tmp, qemu, args } = setup(t, ['7.2']);
  const { run, pid } = await startRun(t, tmp, args('run', '--accel', 'tcg', '--qemu', qemu['7.2']!, SPEC, '--', '-display', 'none'));
  const up = await vfiokit(args('upgrade', GUEST), { env: { TMPDIR: tmp } });
  t.is(up.code, 5, up.stderr);
  t.regex(up.stderr, /the QEMU running guest nfv-guest \(.*qemu-7\.2, pid \d+\) is QEMU 7\.2\.\d+, which has no cpr-transfer migration mode \(QEMU 10\.0 added it\): handing a guest with VFIO devices to a new QEMU needs QEMU 10\.1 or later on both sides/);
  t.true(processAlive(pid));
  run.child.kill('SIGINT');
  t.is((await run.ended).code, 130);
  await nothingLeft(tmp);
});

test('upgrade to QEMU 10.0 is refused, saying 10.0 has cpr-transfer but not for VFIO devices, before anything starts', async (t) => {
  t.timeout(200_000);
  const { tmp, qemu, args } = setup(t, ['11.1', '10.0']);
  const { run, pid } = await startRun(t, tmp, args('run', '--accel', 'tcg', '--qemu', qemu['11.1']!, SPEC, '--', '-display', 'none'));
  const up = await vfiokit(args('upgrade', GUEST, '--qemu', qemu['10.0']!), { env: { TMPDIR: tmp } });
  t.is(up.code, 5, up.stderr);
  t.regex(up.stderr, /the new QEMU .*qemu-10\.0 is QEMU 10\.0\.\d+, which has cpr-transfer but not for VFIO devices: handing a guest with VFIO devices to a new QEMU needs QEMU 10\.1 or later/);
  t.true(processAlive(pid));
  t.is(processesMentioning(tmp).filter((p) => p.argv.includes('-incoming')).length, 0, 'no new QEMU was started');
  run.child.kill('SIGINT');
  t.is((await run.ended).code, 130);
  await nothingLeft(tmp);
});

test('upgrade refuses a guest holding a device the kernel offers no reset before anything starts, naming the device, why QEMU would reset it and FLR, and the guest runs on under the old QEMU', async (t) => {
  t.timeout(200_000);
  const { host, tmp, qemu, args } = setup(t, ['11.1']);
  // The first VF, as a function the kernel offers no reset: the kernel then
  // shows neither reset_method nor reset (pci_dev_reset_method_attr_is_visible).
  await vfiokit(args('check', '0000:3b:02.0')); // makes the simulated host (the VF is not on vfio-pci yet: refused)
  for (const f of ['reset_method', 'reset']) rmSync(join(host, 'sys/bus/pci/devices/0000:3b:02.0', f));
  const { run, pid, qmp } = await startRun(t, tmp, args('run', '--accel', 'tcg', '--qemu', qemu['11.1']!, SPEC, '--', '-display', 'none'));
  const up = await vfiokit(args('upgrade', GUEST), { env: { TMPDIR: tmp } });
  t.is(up.code, 5, up.stderr);
  t.regex(up.stderr, /guest nfv-guest cannot be upgraded: 0000:3b:02\.0: the kernel offers no reset for it \(no reset_method: VFIO reports it without VFIO_DEVICE_FLAGS_RESET\)\. QEMU marks such a device for reset \(vfio_pci_compute_needs_reset\)/);
  t.notRegex(up.stderr, /0000:3b:02\.1/, 'the VF with FLR is not named');
  t.regex(up.stderr, /the guest runs on under QEMU 11\.1\.\d+ \(pid \d+\); QEMU leaves alone a device with FLR \(reset_method lists flr or af_flr/);
  t.is(processesMentioning(tmp).filter((p) => p.argv.includes('-incoming')).length, 0, 'no new QEMU was started');
  t.true(processAlive(pid));
  const session = await connectQmp({ path: qmp });
  t.deepEqual(await queryStatus(session), { status: 'running', running: true });
  await session.close();
  run.child.kill('SIGINT');
  t.is((await run.ended).code, 130);
  await nothingLeft(tmp);
});

test('upgrade of a guest no run manages names the guest and how to start it', async (t) => {
  const { args } = setup(t, []);
  const up = await vfiokit(args('upgrade', 'no-such-guest'));
  t.is(up.code, 3, up.stderr);
  t.regex(up.stderr, /no guest named no-such-guest is running under vfiokit run on this host/);
});
