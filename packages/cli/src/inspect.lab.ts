// `vfiokit ls` and `check` on the real kernel (the lab's x86 guest): what the
// operator sees must be what the kernel says. Through the built binary; no
// mock here.
import assert from 'node:assert/strict';
import { iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { labDeviceBdf, runVfiokit } from './lab/guest';

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'vfiokit ls marks the solo group viable and the blocked group not viable, naming virtio-pci',
    run: () => {
      const run = runVfiokit(['--json', 'ls']);
      assert.equal(run.status, 0, run.stderr);
      const body = JSON.parse(run.stdout) as { iommu: { present: boolean; kind?: string }; groups: { id: number; viable: boolean; blocking: { address: string; driver: string }[] }[] };
      assert.equal(body.iommu.present, true);
      assert.equal(body.iommu.kind, 'intel-vtd');
      const solo = body.groups.find((g) => g.id === iommuGroupOf(labDeviceBdf('solo')));
      assert.ok(solo);
      assert.equal(solo.viable, true);
      const blocked = body.groups.find((g) => g.id === iommuGroupOf(labDeviceBdf('blocked')));
      assert.ok(blocked);
      assert.equal(blocked.viable, false);
      assert.deepEqual(blocked.blocking.map((b) => b.driver), ['virtio-pci']);
    },
  },
  {
    name: 'vfiokit check of the solo edu passes with exit 0, and of the blocked one fails with exit 5',
    run: () => {
      const solo = runVfiokit(['check', labDeviceBdf('solo')]);
      assert.equal(solo.status, 0, solo.stdout + solo.stderr);
      assert.match(solo.stdout, new RegExp(`^${labDeviceBdf('solo')} \\(group ${iommuGroupOf(labDeviceBdf('solo'))}\\): can be assigned\\n`));
      const blocked = runVfiokit(['check', labDeviceBdf('blocked')]);
      assert.equal(blocked.status, 5, blocked.stdout + blocked.stderr);
      assert.match(blocked.stdout, /FAIL viability group \d+ is not viable: .* is bound to virtio-pci/);
    },
  },
];
