// `vfiokit run` on the real kernel (the lab's x86 guest, see
// packages/testkit/src/lab/README.md): the solo edu, taken off vfio-pci so
// that it starts with no driver, goes to vfio-pci for a QEMU that really
// opens it (its group held, guest RAM pinned), and comes back to no driver
// however the guest ends. Through the built binary, as an operator runs it;
// no testkit here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { driverOf, iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { BIN, DEVICES, overrideOf, soloBdf } from './lab/guest';


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

/** Start `vfiokit run` on a 64 MiB q35 guest holding `bdf`, stopped before boot; resolves once QEMU runs. */
async function startRun(bdf: string, dir: string) {
  const spec = join(dir, 'guest.yaml');
  fs.writeFileSync(spec, `name: lab-run\nmemory: 64M\nmachine: q35\niommu: none\ndevices:\n  - ${bdf}\n`);
  const child = spawn(process.execPath, [BIN, 'run', '--accel', 'tcg', spec, '--', '-S', '-display', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } });
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
];
