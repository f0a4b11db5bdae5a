// `vfiokit plan` on the iommufd lab kernel (packages/testkit/src/lab/README.md,
// `pnpm lab iommufd`): on a real host with /dev/iommu and VFIO cdevs and a
// QEMU 8.2+ named by --qemu, plan chooses iommufd, and the QEMU line it
// prints starts (stopped, -S) with the solo edu taken by its cdev. Run
// through the built binary, as an operator would. No testkit here.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchQemu } from '@vfiokit/qemu-bridge';
import { labDeviceBdf, runVfiokit } from './lab/guest';

const soloBdf = (): string => labDeviceBdf('solo');
const vfiokit = runVfiokit;

export const cases: { name: string; run: () => void | Promise<void>; timeoutMs?: number }[] = [
  {
    name: 'vfiokit plan on the iommufd kernel with QEMU 10.0 chooses iommufd, and its QEMU line starts with the edu taken by its cdev',
    // The CLI (node, a QEMU --version) and then QEMU itself, under TCG.
    timeoutMs: 300_000,
    run: async () => {
      const qemu = process.env.VFIOKIT_LAB_QEMU_IOMMUFD;
      assert.ok(qemu, 'VFIOKIT_LAB_QEMU_IOMMUFD is not set: the iommufd lab profile names the QEMU (8.2+)');
      const bdf = soloBdf();
      const dir = mkdtempSync(join(tmpdir(), 'vfiokit-plan-'));
      try {
        const spec = join(dir, 'guest.yaml');
        writeFileSync(spec, `name: lab-cdev\nmemory: 64M\ncpus: 1\nmachine: q35\niommu: none\ndevices:\n  - ${bdf}\n`);
        const socket = join(dir, 'qmp.sock');
        // One run (node and the QEMU probe take seconds each under TCG):
        // the JSON plan carries the choice and the QEMU argv.
        const run = vfiokit(['--json', 'plan', spec, '--memlock', 'unlimited', '--qemu', qemu, '--qmp', socket]);
        assert.equal(run.status, 0, run.stderr);
        const plan = JSON.parse(run.stdout) as { backend: { backend: string; reasons: string[] }; qemu: string[] };
        assert.deepEqual(plan.backend, {
          backend: 'iommufd',
          reasons: ['/dev/iommu and VFIO device cdevs (/proc/devices lists vfio-dev)', `QEMU 10.0 (${qemu} --version) has -object iommufd`],
        });
        const argv = plan.qemu;
        assert.equal(argv[0], qemu);
        assert.ok(argv.includes('iommufd,id=iommufd0'), argv.join(' '));
        assert.ok(argv.some((a) => a.startsWith(`vfio-pci,host=${bdf},`) && a.endsWith(',iommufd=iommufd0')), argv.join(' '));
        // The line as plan printed it, but for what this guest lacks: KVM
        // (the lab guest runs under TCG) and a display; -S keeps it stopped.
        const accel = argv.indexOf('-accel');
        assert.equal(argv[accel + 1], 'kvm');
        const line = [...argv.slice(0, accel + 1), 'tcg', ...argv.slice(accel + 2), '-S', '-display', 'none'];
        const vm = await launchQemu(line, { path: socket }, { startTimeoutMs: 90_000, commandTimeoutMs: 60_000 });
        try {
          const fds = readdirSync(`/proc/${vm.pid}/fd`).map((fd) => {
            try {
              return readlinkSync(`/proc/${vm.pid}/fd/${fd}`);
            } catch {
              return '';
            }
          });
          const cdev = readdirSync(`/sys/bus/pci/devices/${bdf}/vfio-dev`)[0]!;
          assert.ok(fds.includes('/dev/iommu') && fds.includes(`/dev/vfio/devices/${cdev}`), `QEMU holds /dev/iommu and ${cdev}: ${fds.filter((f) => f.startsWith('/dev')).join(' ')}`);
          const link = await vm.qmp.execute('qom-get', { path: `/machine/peripheral/hostdev-${bdf.replace(/[:.]/g, '-')}`, property: 'iommufd' });
          assert.equal(link, '/objects/iommufd0');
          assert.equal(((await vm.qmp.execute('query-status')) as { status: string }).status, 'prelaunch');
        } finally {
          await vm.stop(10_000);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
