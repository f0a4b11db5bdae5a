import test from 'ava';
import { testNeedingQemu, type RegisterTest } from './qemu-process';

interface Seen { how: 'test' | 'skip'; title: string; failure?: string }

/** A stand-in for ava's test and test.skip that records what was registered and runs it. */
function recorder(): { seen: Seen[]; test: RegisterTest<{ fail(m?: string): void }> & { skip: RegisterTest<{ fail(m?: string): void }> } } {
  const seen: Seen[] = [];
  const run = (how: Seen['how']) => (title: string, impl: (t: { fail(m?: string): void }) => void | Promise<void>) => {
    const entry: Seen = { how, title };
    seen.push(entry);
    if (how === 'test') void impl({ fail: (m) => { entry.failure = m ?? 'failed'; } });
  };
  return { seen, test: Object.assign(run('test'), { skip: run('skip') }) };
}

const MISSING = 'vfiokit-no-such-qemu';

test('a test needing a QEMU that does not run is a skip on a developer machine', (t) => {
  const r = recorder();
  testNeedingQemu(r.test, MISSING, 'qemu-system-x86', {})('plugs a device', () => {});
  t.deepEqual(r.seen, [{ how: 'skip', title: 'plugs a device' }]);
});

test('in CI a test needing a QEMU that install.sh installs fails, naming the package, rather than skip', (t) => {
  const r = recorder();
  testNeedingQemu(r.test, MISSING, 'qemu-system-x86', { CI: 'true' })('plugs a device', () => {});
  t.is(r.seen.length, 1);
  t.is(r.seen[0]!.how, 'test');
  t.regex(r.seen[0]!.failure ?? '', /vfiokit-no-such-qemu does not run here, though scripts\/install\.sh installs it \(apt-get install qemu-system-x86\)/);
});

test('a test needing a QEMU that runs is registered as itself', (t) => {
  const r = recorder();
  let ran = false;
  // `node` stands in for a binary that answers --version.
  testNeedingQemu(r.test, process.execPath, 'nodejs', { CI: 'true' })('plugs a device', () => { ran = true; });
  t.deepEqual(r.seen, [{ how: 'test', title: 'plugs a device' }]);
  t.true(ran);
});
