import test from 'ava';
import { vfiokit } from '../testing/run-cli';

test('lab passes its arguments to testkit\'s lab runner, whose usage errors exit 2', async (t) => {
  const run = await vfiokit(['lab', 'no-such-profile']);
  t.is(run.code, 2);
  t.regex(run.stderr, /^lab: unknown profile no-such-profile; the profiles are: x86, x86-amd, x86-noir, x86-noir-unsafe, pseries, arm64, iommufd, bench\n/);
});
