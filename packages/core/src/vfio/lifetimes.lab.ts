// Lifetimes on the real kernel in the lab guest (q35, emulated VT-d, edu; see
// packages/testkit/src/lab/README.md): mappings survive garbage collection,
// a device keeps its container open, and the last handle closes everything.
// The work runs in `node --expose-gc` child so every VFIO fd ends with it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

function soloBdf(): string {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  const t = JSON.parse(fs.readFileSync(file, 'utf8')) as { devices: { role: string; bdf: string }[] };
  const d = t.devices.find((x) => x.role === 'solo');
  assert.ok(d, 'the lab topology has no solo edu device');
  return d.bdf;
}

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'a type1 container keeps its mappings through garbage collection, and edu DMA through them still lands',
    run: () => {
      const child = path.join(__dirname, 'lab', 'lifetimes-child.js');
      const outText = execFileSync(process.execPath, ['--expose-gc', child, soloBdf()], { encoding: 'utf8', timeout: 110_000 });
      const r = JSON.parse(outText.trim().split('\n').pop()!) as Record<string, unknown>;
      assert.deepEqual(
        [r.remapAfterGc, r.iommuInfoAfterGc, r.firstCopy, r.secondCopy, r.reopenWhileHeld, r.reopenAfterGc, r.mappingsAfterReopen, r.mapAfterReopen, r.useAfterClose],
        ['EEXIST', 'ok', true, true, 'EBUSY', 'ok', 0, 'ok', 'EBADF'],
        JSON.stringify(r),
      );
    },
  },
];
