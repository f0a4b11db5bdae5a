import test from 'ava';
import { runEntryLimit, runLabReplay } from './replay-child';

// The lab runs this on the real kernel (replay.lab.ts); here the same program
// runs on vfio-core's mock, so a broken lab program shows before a lab boot.
test('the lab replay program leaves exactly the live guest IOVAs mapped on the mock', (t) => {
  const r = runLabReplay('--mock');
  t.deepEqual(
    [r.liveOther, r.freeOther, r.disagreements, (r.eexist as number) > 0, (r.freeOk as number) > 0, (r.ioctls as number) <= (r.ops as number)],
    [0, 0, [], true, true, true],
  );
});

test('the lab entry-limit program: the policy refuses one region over the limit with nothing mapped, the mock says ENOSPC past it', (t) => {
  t.deepEqual(runEntryLimit('--mock'), {
    limit: 4096,
    refused: 'DMA_ENTRY_LIMIT',
    afterRefusal: 'ok',
    mappedAtLimit: 4096,
    callsAtLimit: 1,
    beyond: 'ENOSPC',
  });
});
