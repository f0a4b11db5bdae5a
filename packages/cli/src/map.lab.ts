// The CLI on the real kernel (the lab's x86 guest, see
// packages/testkit/src/lab/README.md): `vfiokit map` identity-maps real memory
// of its own into a type1v2 container holding the solo edu's group, through
// the built binary, as an operator would run it. No mock here.
import assert from 'node:assert/strict';
import { iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { labDeviceBdf, runVfiokit as vfiokit, soloBdf } from './lab/guest';

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'vfiokit map pins 64 MiB of its own memory into a kernel container and unmaps it, one ioctl each way',
    run: () => {
      const group = String(iommuGroupOf(soloBdf()));
      const run = vfiokit(['--json', 'map', '--group', group, '--memory', '64M']);
      assert.equal(run.status, 0, run.stderr);
      const report = JSON.parse(run.stdout) as { backend: string; groups: number[]; regions: number; calls: number; ioctls: number; entries: number; unmapIoctls: number; host: { dmaEntryLimit: number } };
      assert.equal(report.backend, 'kernel');
      assert.deepEqual(report.groups, [Number(group)]);
      assert.equal(report.regions, 1);
      assert.equal(report.calls, 1);
      assert.equal(report.ioctls, 1);
      assert.equal(report.entries, 1);
      assert.equal(report.unmapIoctls, 1);
      // The x86 lab loads vfio_iommu_type1 with its default dma_entry_limit (65535); the kernel reports what is left.
      assert.equal(report.host.dmaEntryLimit, 65535);
    },
  },
  {
    name: 'vfiokit map of a group that is not viable is refused before /dev/vfio is opened',
    run: () => {
      const group = String(iommuGroupOf(labDeviceBdf('blocked')));
      const run = vfiokit(['map', '--group', group, '--memory', '64M']);
      assert.equal(run.status, 5, run.stderr);
      assert.match(run.stderr, new RegExp(`^vfiokit: group ${group} is not viable: `));
    },
  },
];
