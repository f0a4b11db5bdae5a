// Lifetimes on the real kernel in the lab guest (q35, emulated VT-d, edu; see
// packages/testkit/src/lab/README.md): mappings survive garbage collection,
// a device keeps its container open, and the last handle closes everything.
// The work runs in `node --expose-gc` child so every VFIO fd ends with it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { soloBdf } from './lab/support';

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
