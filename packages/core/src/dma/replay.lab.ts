// The real recording's shape replayed through the shadow policy on the real
// kernel in the lab guest (q35, emulated VT-d, edu; see
// packages/testkit/src/lab/README.md). The work runs in a child process so
// every VFIO fd is closed when it ends; these cases check what it reports.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { soloBdf } from '../vfio/lab/support';

function runChild(...args: string[]): Record<string, unknown> {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'lab', 'replay-child.js'), soloBdf(), ...args], {
    encoding: 'utf8',
    timeout: 110_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'one region over dma_entry_limit is refused before the kernel, and the kernel answers ENOSPC right at the limit',
    run: () => {
      const r = runChild('entry-limit');
      assert.deepEqual(
        [r.refused, r.afterRefusal, r.mappedAtLimit, r.callsAtLimit, r.beyond],
        ['DMA_ENTRY_LIMIT', 'ok', r.limit, 1, 'ENOSPC'],
        JSON.stringify(r),
      );
    },
  },
  {
    name: 'the recording replayed on the kernel leaves exactly the live guest IOVAs mapped (EEXIST) and every freed one free',
    run: () => {
      const r = runChild();
      assert.deepEqual(r.disagreements, [], 'the kernel and the type1 model disagreed');
      assert.equal(r.liveOther, 0, `${r.liveOther} live guest pages were not mapped on the kernel`);
      assert.equal(r.freeOther, 0, `${r.freeOther} freed guest pages were still mapped on the kernel`);
      assert.ok((r.eexist as number) > 0 && (r.freeOk as number) > 0, `nothing checked: ${JSON.stringify(r)}`);
      assert.ok((r.ioctls as number) <= (r.ops as number), `${r.ioctls} ioctls for ${r.ops} guest ops`);
    },
  },
  {
    name: 'after the replay edu DMA moves data between live guest IOVAs and cannot write through a freed one',
    run: () => {
      const r = runChild('edu');
      assert.ok((r.eduLivePairs as number) >= 4 && (r.eduFreed as number) >= 4, `too few samples: ${JSON.stringify(r)}`);
      assert.equal(r.eduLiveOk, r.eduLivePairs, 'edu could not copy between some pairs of live guest mappings');
      assert.equal(r.eduFreedUntouched, r.eduFreed, 'an edu write through a freed guest IOVA reached the page it used to map');
    },
  },
];
