// `vfiokit ls` and `check` on the real kernel (the lab's x86 guest): what the
// operator sees must be what the kernel says. Through the built binary; no
// testkit here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { BIN } from './lab/guest';


function bdfOf(role: string): string {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  const topology = JSON.parse(readFileSync(file, 'utf8')) as { devices: { role: string; bdf: string }[] };
  const d = topology.devices.find((x) => x.role === role);
  assert.ok(d, `the lab topology has no device with role ${role}`);
  return d.bdf;
}

const groupOf = (bdf: string): number => Number(basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`)));

function vfiokit(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 100_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'vfiokit ls marks the solo group viable and the blocked group not viable, naming virtio-pci',
    run: () => {
      const run = vfiokit(['--json', 'ls']);
      assert.equal(run.status, 0, run.stderr);
      const body = JSON.parse(run.stdout) as { iommu: { present: boolean; kind?: string }; groups: { id: number; viable: boolean; blocking: { address: string; driver: string }[] }[] };
      assert.equal(body.iommu.present, true);
      assert.equal(body.iommu.kind, 'intel-vtd');
      const solo = body.groups.find((g) => g.id === groupOf(bdfOf('solo')));
      assert.ok(solo);
      assert.equal(solo.viable, true);
      const blocked = body.groups.find((g) => g.id === groupOf(bdfOf('blocked')));
      assert.ok(blocked);
      assert.equal(blocked.viable, false);
      assert.deepEqual(blocked.blocking.map((b) => b.driver), ['virtio-pci']);
    },
  },
  {
    name: 'vfiokit check of the solo edu passes with exit 0, and of the blocked one fails with exit 5',
    run: () => {
      const solo = vfiokit(['check', bdfOf('solo')]);
      assert.equal(solo.status, 0, solo.stdout + solo.stderr);
      assert.match(solo.stdout, new RegExp(`^${bdfOf('solo')} \\(group ${groupOf(bdfOf('solo'))}\\): can be assigned\\n`));
      const blocked = vfiokit(['check', bdfOf('blocked')]);
      assert.equal(blocked.status, 5, blocked.stdout + blocked.stderr);
      assert.match(blocked.stdout, /FAIL viability group \d+ is not viable: .* is bound to virtio-pci/);
    },
  },
];
