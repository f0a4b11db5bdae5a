import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// The lab runs this program on the real kernel (lifetimes.lab.ts); here the
// same program runs on vfio-core's mock under node --expose-gc.
test('the lab lifetimes program keeps mappings through collection and closes on the last handle, on the mock', (t) => {
  const out = execFileSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register', path.join(__dirname, 'lifetimes-child.ts'), '--mock'], {
    encoding: 'utf8',
    timeout: 170_000,
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
  t.deepEqual(
    [r.remapAfterGc, r.iommuInfoAfterGc, r.firstCopy, r.secondCopy, r.reopenWhileHeld, r.reopenAfterGc, r.mappingsAfterReopen, r.mapAfterReopen, r.useAfterClose],
    ['EEXIST', 'ok', true, true, 'EBUSY', 'ok', 0, 'ok', 'EBADF'],
  );
});
