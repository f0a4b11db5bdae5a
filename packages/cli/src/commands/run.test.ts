// `vfiokit run` on simulated hosts with a real QEMU: every way a guest can
// end (QEMU exits, crashes, fails to start; vfiokit is interrupted, crashes,
// is killed) leaves no device on vfio-pci that the run put there, no QEMU
// and no folder. The simulated host's devices are not on this machine, so
// QEMU itself would refuse them: the runs that need a QEMU that comes up use
// a stand-in (`--qemu`) that starts the real QEMU without the vfio-pci
// devices and with TCG, and everything else of the planned command line.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { eventually, processAlive, processesMentioning, qemuAvailable } from '@vfiokit/testkit';
import { EXAMPLES, parseJson, startVfiokit, vfiokit } from '../testing/run-cli';
import { writeStandInQemu } from '../testing/stand-in-qemu';
import { assertDocument } from '../json-schema';

const hasQemu = qemuAvailable();
const SPEC = join(EXAMPLES, 'sriov-vfs-viommu.yaml');
const VF0 = '0000:3b:02.0';
const VF1 = '0000:3b:02.1';

function scratch(t: ExecutionContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A simulated sriov-server kept in a folder, a TMPDIR of the run's own, and the stand-in QEMU. */
function setup(t: ExecutionContext): { host: string; tmp: string; qemu: string; args: (...rest: string[]) => string[] } {
  const base = scratch(t, 'vfiokit-run-test-');
  const host = join(base, 'host');
  const tmp = join(base, 'tmp');
  const qemu = join(base, 'qemu');
  mkdirSync(tmp);
  writeStandInQemu(qemu);
  return { host, tmp, qemu, args: (...rest) => ['--mock', 'sriov-server', '--mock-dir', host, ...rest] };
}

/**
 * Whether the QMP monitor at `path` greets a new client. A monitor serves one
 * client at a time, and vfiokit run lets go of it only once QEMU has started
 * and negotiated, so a greeting means the start is over: a signal sent to
 * QEMU after it ends the guest, not the start.
 */
function monitorGreets(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (greeted: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(greeted);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.on('data', (d) => done(d.toString().includes('"QMP"')));
    socket.on('error', () => done(false));
  });
}

function driverOf(host: string, address: string): string | undefined {
  try {
    return basename(readlinkSync(join(host, 'sys', 'bus', 'pci', 'devices', address, 'driver')));
  } catch {
    return undefined;
  }
}

/** Nothing the run made is left: no process names its TMPDIR (QEMU, reapers), and the folder is empty. */
async function nothingLeft(tmp: string): Promise<void> {
  await eventually(() => processesMentioning(tmp).length === 0, `no process names ${tmp}: ${JSON.stringify(processesMentioning(tmp))}`);
  await eventually(() => readdirSync(tmp).length === 0, `${tmp} is empty: ${readdirSync(tmp).join(', ')}`);
}

test('run refuses a guest whose RLIMIT_MEMLOCK the hard limit keeps too low, with the number, before anything is bound', async (t) => {
  const base = scratch(t, 'vfiokit-run-test-');
  const run = await vfiokit(['--mock', 'workstation', '--mock-dir', base, 'run', join(EXAMPLES, 'usb-controller.yaml')]);
  t.is(run.code, 5, run.stderr);
  t.regex(run.stderr, /^vfiokit: the guest needs RLIMIT_MEMLOCK of 5368709120 bytes \(5 GiB, its pinned RAM plus 1 GiB headroom\) but the hard limit is 8388608 bytes \(8 MiB\), which only root can raise\n/);
  t.regex(run.stderr, /hint: raise the hard limit to 5368709120 bytes \(as root: ulimit -Hl 5242880;/);
  t.is(driverOf(base, '0000:04:00.0'), 'xhci_hcd');
  t.is(run.stdout, '');
});

test('run refuses a guest its plan refuses, with every reason, before anything is bound', async (t) => {
  const base = scratch(t, 'vfiokit-run-test-');
  const run = await vfiokit(['--mock', 'workstation', '--mock-dir', base, 'run', join(EXAMPLES, 'gpu-passthrough.yaml')]);
  t.is(run.code, 5, run.stderr);
  t.regex(run.stderr, /^vfiokit: guest .* cannot be planned on this host: .*console-display/);
  t.is(driverOf(base, '0000:01:00.0'), 'nouveau');
});

test('run names a QEMU that is not installed and changes nothing', async (t) => {
  const { host, args } = setup(t);
  const run = await vfiokit([...args('run', '--qemu', 'vfiokit-no-such-qemu', SPEC)]);
  t.is(run.code, 8, run.stderr);
  t.regex(run.stderr, /^vfiokit: vfiokit-no-such-qemu is not installed \(not found on PATH\)\n/);
  t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
});

if (hasQemu) {
  test('run whose QEMU fails to start gives both VFs back to iavf and exits 7 with QEMU\'s reason', async (t) => {
    const { host, tmp, args } = setup(t);
    const run = await vfiokit(args('run', '--accel', 'tcg', SPEC, '--', '-display', 'none'), { env: { TMPDIR: tmp } });
    t.is(run.code, 7, run.stderr);
    t.regex(run.stderr, /^vfiokit: QEMU did not start: .*vfio.*0000:3b:02\.0/m);
    t.regex(run.stdout, /group 4: moved to vfio-pci\n {2}0000:3b:02\.0 {2}iavf -> vfio-pci\n/);
    t.regex(run.stdout, /reset 0000:3b:02\.0 \(the kernel tries flr\)\n {2}\$ echo 1 > \/sys\/bus\/pci\/devices\/0000:3b:02\.0\/reset\n/);
    t.regex(run.stdout, /group 4: gave back\n {2}0000:3b:02\.0 {2}vfio-pci -> iavf\n/);
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
    await nothingLeft(tmp);
  });

  test('run with QEMU ending on SIGTERM resets both VFs, gives them back and exits 0 with the report', async (t) => {
    const { host, tmp, qemu, args } = setup(t);
    const run = startVfiokit(['--json', ...args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none')], { env: { TMPDIR: tmp } });
    // --json prints nothing until the end: wait for QEMU by its QMP socket,
    // then until vfiokit has let go of the monitor (QEMU started).
    await eventually(() => processesMentioning(tmp).some((p) => p.argv.some((a) => a.startsWith('unix:') && a.includes('qmp.sock')) && p.argv[0]!.includes('qemu-system')), 'QEMU is up');
    const qemuProcess = processesMentioning(tmp).find((p) => p.argv[0]!.includes('qemu-system'))!;
    const qmpPath = /^unix:([^,]+)/.exec(qemuProcess.argv.find((a) => a.startsWith('unix:') && a.includes('qmp.sock'))!)![1]!;
    // Twice, a second apart: a first greeting may come before vfiokit has
    // connected at all; the second then waits behind vfiokit's session.
    const deadline = Date.now() + 120_000;
    for (let greetings = 0; greetings < 2; ) {
      if (await monitorGreets(qmpPath)) greetings += 1;
      if (Date.now() > deadline) throw new Error(`QEMU's monitor at ${qmpPath} never greeted: vfiokit did not finish starting QEMU`);
      await new Promise((resolve) => setTimeout(resolve, greetings === 1 ? 1000 : 100));
    }
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['vfio-pci', 'vfio-pci']);
    const pid = qemuProcess.pid;
    process.kill(pid, 'SIGTERM');
    const ended = await run.ended;
    t.is(ended.code, 0, ended.stderr);
    const report = parseJson<{ groups: number[]; qemu: { pid: number; exitCode: number; signal: null; argv: string[] }; resets: { address: string; done: boolean }[]; restored: { group: number; changes: { address: string; to: string }[] }[]; memlock: { reason: string } }>({ code: ended.code, stdout: ended.stdout, stderr: ended.stderr });
    t.notThrows(() => assertDocument('run', report), 'the report validates against the run schema');
    t.deepEqual(report.groups, [4, 5]);
    t.is(report.qemu.pid, pid);
    t.is(report.qemu.exitCode, 0);
    t.is(report.qemu.argv[0], qemu);
    t.true(report.qemu.argv.includes('vfio-pci,host=0000:3b:02.0,id=hostdev-0000-3b-02-0,bus=rp0,addr=0x0.0'));
    t.deepEqual(report.resets.map((r) => [r.address, r.done]).sort(), [[VF0, true], [VF1, true]]);
    t.deepEqual(report.restored.flatMap((r) => r.changes.map((c) => [c.address, c.to])).sort(), [[VF0, 'iavf'], [VF1, 'iavf']]);
    t.is(report.memlock.reason, 'RLIMIT_MEMLOCK is unlimited');
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
    await nothingLeft(tmp);
  });

  test('run whose QEMU is killed gives both VFs back and exits 7 saying QEMU was killed by SIGKILL', async (t) => {
    const { host, tmp, qemu, args } = setup(t);
    const run = startVfiokit(args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none'), { env: { TMPDIR: tmp } });
    const m = await run.waitForStdout(/QEMU is running \(pid (\d+)\)/);
    process.kill(Number(m[1]), 'SIGKILL');
    const ended = await run.ended;
    t.is(ended.code, 7, ended.stderr);
    t.regex(ended.stderr, /^vfiokit: QEMU was killed by SIGKILL\n/);
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
    await nothingLeft(tmp);
  });

  test('run leaves on vfio-pci a VF that was there before it and gives back only the one it moved', async (t) => {
    const { host, tmp, qemu, args } = setup(t);
    t.is((await vfiokit(args('bind', VF0))).code, 0);
    const run = startVfiokit(args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none'), { env: { TMPDIR: tmp } });
    const m = await run.waitForStdout(/QEMU is running \(pid (\d+)\)/);
    t.regex(m.input, /group 4: nothing to move to vfio-pci\n {2}0000:3b:02\.0 {2}already on vfio-pci\n/);
    process.kill(Number(m[1]), 'SIGTERM');
    const ended = await run.ended;
    t.is(ended.code, 0, ended.stderr);
    t.notRegex(ended.stdout, /reset 0000:3b:02\.0/);
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['vfio-pci', 'iavf']);
    await nothingLeft(tmp);
  });

  for (const [way, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    test(`run stopped by ${way} while the guest runs stops QEMU, gives both VFs back and exits ${code}`, async (t) => {
      const { host, tmp, qemu, args } = setup(t);
      const run = startVfiokit(args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none'), { env: { TMPDIR: tmp, VFIOKIT_TEST_AT: 'run-qemu-up' } });
      await run.waitForStderr('vfiokit: at run-qemu-up\n');
      const pid = Number(/QEMU is running \(pid (\d+)\)/.exec((await run.waitForStdout(/QEMU is running \(pid (\d+)\)/))[0])![1]);
      process.kill(run.pid, way);
      const ended = await run.ended;
      t.is(ended.code, code, ended.stderr);
      t.false(processAlive(pid));
      t.regex(ended.stdout, /group 5: gave back\n {2}0000:3b:02\.1 {2}vfio-pci -> iavf\n/);
      t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
      await nothingLeft(tmp);
    });
  }

  test('run that crashes while the guest runs kills QEMU and gives both VFs back on its way out', async (t) => {
    const { host, tmp, qemu, args } = setup(t);
    const run = startVfiokit(args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none'), { env: { TMPDIR: tmp, VFIOKIT_TEST_AT: 'run-qemu-up:crash' } });
    const ended = await run.ended;
    t.is(ended.code, 1, ended.stderr);
    t.regex(ended.stderr, /vfiokit: internal error: Error: VFIOKIT_TEST_AT=run-qemu-up:crash/);
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
    await nothingLeft(tmp);
  });

  test('run killed with SIGKILL takes QEMU with it, and unbind gives back the VFs its records name', async (t) => {
    const { host, tmp, qemu, args } = setup(t);
    const run = startVfiokit(args('run', '--qemu', qemu, SPEC, '--', '-S', '-display', 'none'), { env: { TMPDIR: tmp, VFIOKIT_TEST_AT: 'run-qemu-up' } });
    await run.waitForStderr('vfiokit: at run-qemu-up\n');
    process.kill(run.pid, 'SIGKILL');
    await run.ended;
    await nothingLeft(tmp);
    // Nothing runs after SIGKILL: the devices wait on vfio-pci, and the records say where they go.
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['vfio-pci', 'vfio-pci']);
    const records = readdirSync(join(host, 'run', 'vfiokit', 'devices')).sort();
    t.deepEqual(records, [`${VF0}.json`, `${VF1}.json`]);
    t.is(JSON.parse(readFileSync(join(host, 'run', 'vfiokit', 'devices', `${VF0}.json`), 'utf8')).originalDriver, 'iavf');
    const unbind = await vfiokit(args('unbind', '4', '5'));
    t.is(unbind.code, 0, unbind.stderr);
    t.deepEqual([driverOf(host, VF0), driverOf(host, VF1)], ['iavf', 'iavf']);
  });
}
