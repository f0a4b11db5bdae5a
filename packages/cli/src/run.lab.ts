// `vfiokit run` on the real kernel (the lab's x86 guest, see
// packages/testkit/src/lab/README.md): the solo edu, taken off vfio-pci so
// that it starts with no driver, goes to vfio-pci for a QEMU that really
// opens it (its group held, guest RAM pinned), and comes back to no driver
// however the guest ends. Through the built binary, as an operator runs it;
// no testkit here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { join } from 'node:path';
import { driverOf, iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { BIN, DEVICES, overrideOf, runVfiokit, soloBdf } from './lab/guest';


/** Who holds /dev/vfio/N open. */
function holders(group: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `/dev/vfio/${group}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

const vmLckKiB = (pid: number) => Number(/^VmLck:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/**
 * Take the solo edu off vfio-pci (no driver, no override), run `body`, and
 * put it back on vfio-pci as the lab's /init left it, whatever happens.
 */
async function withSoloUnbound(body: (bdf: string) => Promise<void>): Promise<void> {
  const bdf = soloBdf();
  assert.equal(driverOf(bdf), 'vfio-pci', 'the lab starts with solo on vfio-pci');
  fs.writeFileSync(`/sys/bus/pci/drivers/vfio-pci/unbind`, bdf);
  fs.writeFileSync(`${DEVICES}/${bdf}/driver_override`, '\n');
  try {
    assert.deepEqual([driverOf(bdf), overrideOf(bdf)], [null, '(null)']);
    await body(bdf);
  } finally {
    if (driverOf(bdf) !== null && driverOf(bdf) !== 'vfio-pci') fs.writeFileSync(`${DEVICES}/${bdf}/driver/unbind`, bdf);
    fs.writeFileSync(`${DEVICES}/${bdf}/driver_override`, 'vfio-pci');
    if (driverOf(bdf) === null) fs.writeFileSync('/sys/bus/pci/drivers_probe', bdf);
  }
}

/**
 * Start `vfiokit run` on a 64 MiB q35 guest named `name` holding `bdf`
 * (stopped before boot unless `qemuArgs` say otherwise), `runOptions` before
 * the spec; resolves once QEMU runs.
 */
async function startRun(bdf: string, dir: string, { name = 'lab-run', runOptions = [] as readonly string[], qemuArgs = ['-S', '-display', 'none'] as readonly string[] } = {}) {
  const spec = join(dir, 'guest.yaml');
  fs.writeFileSync(spec, `name: ${name}\nmemory: 64M\nmachine: q35\niommu: none\ndevices:\n  - ${bdf}\n`);
  const child = spawn(process.execPath, [BIN, 'run', '--accel', 'tcg', ...runOptions, spec, '--', ...qemuArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const ended = new Promise<number | null>((resolve) => child.on('close', resolve));
  const qemuPid = await new Promise<number>((resolve, reject) => {
    const poll = setInterval(() => {
      const m = /QEMU is running \(pid (\d+)\)/.exec(stdout);
      if (m) {
        clearInterval(poll);
        resolve(Number(m[1]));
      }
    }, 100);
    void ended.then((code) => {
      clearInterval(poll);
      reject(new Error(`vfiokit run ended with ${code} before QEMU ran:\n${stdout}\n${stderr}`));
    });
  });
  return { child, qemuPid, ended, out: () => ({ stdout, stderr }) };
}

/** query-status over the QMP socket at `path`: one connection, capabilities negotiated, then closed. */
function qmpStatus(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let buf = '';
    let step = 0;
    socket.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, nl)) as { QMP?: unknown; return?: { status?: string }; error?: unknown; event?: string };
        buf = buf.slice(nl + 1);
        if (msg.event !== undefined) continue;
        if (msg.error !== undefined) return reject(new Error(JSON.stringify(msg.error)));
        if (step === 0) socket.write('{"execute":"qmp_capabilities"}\n');
        else if (step === 1) socket.write('{"execute":"query-status"}\n');
        else {
          socket.end();
          return resolve(msg.return!.status!);
        }
        step++;
      }
    });
    socket.on('error', reject);
  });
}

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'vfiokit run gives QEMU the solo edu on vfio-pci (group held, RAM pinned) and, when QEMU ends, gives it back to no driver',
    run: () =>
      withSoloUnbound(async (bdf) => {
        const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-run-lab-'));
        try {
          const run = await startRun(bdf, dir);
          assert.equal(driverOf(bdf), 'vfio-pci');
          assert.deepEqual(holders(iommuGroupOf(bdf)), [run.qemuPid], 'QEMU holds the group open');
          assert.ok(vmLckKiB(run.qemuPid) >= 60 * 1024, `QEMU pinned its RAM for the device: VmLck ${vmLckKiB(run.qemuPid)} kB`);
          process.kill(run.qemuPid, 'SIGTERM');
          const code = await run.ended;
          const { stdout, stderr } = run.out();
          assert.equal(code, 0, stdout + stderr);
          // The kernel shows a reset attribute only for a function it can reset (edu has no FLR).
          const resettable = fs.existsSync(`${DEVICES}/${bdf}/reset`);
          assert.match(stdout, resettable ? new RegExp(`^reset ${bdf} `, 'm') : new RegExp(`^no reset for ${bdf}: the kernel offers no reset for it`, 'm'));
          assert.match(stdout, new RegExp(`group ${iommuGroupOf(bdf)}: gave back\\n  ${bdf}  vfio-pci -> no driver \\(as before\\)\\n`));
          assert.deepEqual([driverOf(bdf), overrideOf(bdf)], [null, '(null)']);
          assert.deepEqual(holders(iommuGroupOf(bdf)), []);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
  },
  {
    name: 'vfiokit run stopped by SIGINT stops QEMU and gives the solo edu back to no driver, exiting 130',
    run: () =>
      withSoloUnbound(async (bdf) => {
        const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-run-lab-'));
        try {
          const run = await startRun(bdf, dir);
          run.child.kill('SIGINT');
          const code = await run.ended;
          const { stdout, stderr } = run.out();
          assert.equal(code, 130, stdout + stderr);
          assert.throws(() => process.kill(run.qemuPid, 0), 'QEMU is gone');
          assert.deepEqual([driverOf(bdf), overrideOf(bdf)], [null, '(null)']);
          assert.deepEqual(fs.readdirSync(dir), ['guest.yaml'], 'the run left no folder behind');
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
  },
  {
    // The lab found that a cpr-transfer of a guest holding edu loses it: the
    // new QEMU resets edu (QEMU marks a device without
    // VFIO_DEVICE_FLAGS_RESET in vfio_pci_compute_needs_reset) under the old
    // one, which dies on its next BAR access. Needs sid's QEMU 11.1
    // (VFIOKIT_LAB_QEMU_CPR): under 7.2 the version refusal comes first.
    name: 'vfiokit upgrade refuses a guest holding the solo edu, which has no reset, before anything starts, and the guest runs on under the old QEMU 11.1',
    run: () =>
      withSoloUnbound(async (bdf) => {
        const cpr = process.env.VFIOKIT_LAB_QEMU_CPR;
        assert.ok(cpr, 'no QEMU 11.1 for the lab (VFIOKIT_LAB_QEMU_CPR unset): run scripts/fetch-qemu.sh sid on the host');
        // The kernel offers edu no reset: no reset_method (pci_dev_reset_method_attr_is_visible).
        assert.equal(fs.existsSync(`${DEVICES}/${bdf}/reset_method`), false, 'edu has no reset_method');
        const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-run-lab-'));
        try {
          const run = await startRun(bdf, dir, { name: 'lab-upgrade', runOptions: ['--qemu', cpr], qemuArgs: ['-display', 'none'] });
          const qmp = /QMP monitor at (\S+);/.exec(run.out().stdout)![1]!;
          assert.equal(await qmpStatus(qmp), 'running');
          const up = runVfiokit(['upgrade', 'lab-upgrade']);
          assert.equal(up.status, 5, up.stdout + up.stderr);
          assert.match(up.stderr, new RegExp(`guest lab-upgrade cannot be upgraded: ${bdf.replace(/\./g, '\\.')}: the kernel offers no reset for it \\(no reset_method: VFIO reports it without VFIO_DEVICE_FLAGS_RESET\\)`));
          assert.match(up.stderr, /QEMU leaves a device with FLR alone \(reset_method lists flr or af_flr/);
          assert.doesNotMatch(run.out().stdout, /new QEMU/, 'no new QEMU was started');
          assert.deepEqual(holders(iommuGroupOf(bdf)), [run.qemuPid], 'the old QEMU still holds the group, alone');
          assert.equal(await qmpStatus(qmp), 'running', 'the guest runs on under the old QEMU');
          run.child.kill('SIGINT');
          const code = await run.ended;
          assert.equal(code, 130, run.out().stdout + run.out().stderr);
          assert.deepEqual([driverOf(bdf), overrideOf(bdf)], [null, '(null)']);
          assert.deepEqual(fs.readdirSync(dir), ['guest.yaml'], 'the run left nothing behind');
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
  },
];
