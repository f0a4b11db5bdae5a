import test from 'ava';
import { runLabReplay } from './replay-child';

// The lab runs this on the real kernel (replay.lab.ts); here the same program
// runs on vfio-core's mock, so a broken lab program shows before a lab boot.
test('the lab replay program leaves exactly the live guest IOVAs mapped on the mock', (t) => {
  const r = runLabReplay('--mock');
  t.deepEqual(
    [r.liveOther, r.freeOther, r.disagreements, (r.eexist as number) > 0, (r.freeOk as number) > 0, (r.ioctls as number) <= (r.ops as number)],
    [0, 0, [], true, true, true],
  );
});
