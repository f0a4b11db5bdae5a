// `vfiokit run` on the real kernel (the lab's x86 guest, see
// packages/testkit/src/lab/README.md): the solo edu, taken off vfio-pci so
// that it starts with no driver, goes to vfio-pci for a QEMU that really
// opens it (its group held, guest RAM pinned), and comes back to no driver
// however the guest ends. Through the built binary, as an operator runs it;
// no testkit here.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { driverOf, iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { DEVICES, holders, overrideOf, qmpStatus, runVfiokit, soloBdf, startRun, vmLckKiB } from './lab/guest';

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
          assert.match(up.stderr, /QEMU leaves alone a device with FLR \(reset_method lists flr or af_flr/);
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
