import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { formatTap, parseTap } from './tap';

const COUNT_RESULTS = join(__dirname, '..', '..', '..', '..', 'scripts', 'count-results.mjs');

/** The closing line scripts/count-results.mjs prints for a log given on its stdin. */
function closingLine(log: string): string {
  const r = spawnSync(process.execPath, [COUNT_RESULTS], { input: log, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

test('formatted TAP closes with the pass and fail counts scripts/count-results.mjs reads', (t) => {
  const text = formatTap([
    { name: 'a', ok: true },
    { name: 'b', ok: false, detail: ['why'] },
    { name: 'c', ok: true, skip: 'no edu' },
  ]);
  t.true(text.endsWith('1..3\n# pass 1\n# skip 1\n# fail 1\n'));
});

test('a failure carries its detail in a YAML block', (t) => {
  t.true(formatTap([{ name: 'b', ok: false, detail: ['why'] }]).includes('not ok 1 - b\n  ---\n  why\n  ...\n'));
});

test('a hash in a case name is escaped so it is not read as a directive', (t) => {
  t.true(formatTap([{ name: 'group #3 is viable', ok: true }]).includes('ok 1 - group \\#3 is viable\n'));
});

test('parsing reads back names, results, skips and details', (t) => {
  const cases = [
    { name: 'a', ok: true },
    { name: 'b', ok: false, detail: ['line one', 'line two'] },
    { name: 'c', ok: true, skip: 'no edu' },
  ];
  t.deepEqual(parseTap(formatTap(cases)), cases);
});

test('the closing line counts skips apart from passes and failures, from the lab, ava and cargo alike', (t) => {
  const lab = formatTap([
    { name: 'a', ok: true },
    { name: 'b', ok: false, detail: ['why'] },
    { name: 'c', ok: true, skip: 'no edu' },
  ]);
  // ava --tap's closing lines, as turbo prefixes them, for 3 passed and 2 skipped.
  const ava = ['ok 4 - d # SKIP', '1..5', '# tests 5', '# pass 3', '# skip 2', '# fail 0'].map((l) => `@vfiokit/cli:test: ${l}`).join('\n');
  const cargo = '@vfiokit/vfio-core:test: test result: ok. 10 passed; 0 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.02s';
  t.is(closingLine([lab, ava, cargo].join('\n')), '14 passed, 1 failed, 7 skipped');
});

test('a log with no skips still names the skipped count, as .ci/run reads three numbers', (t) => {
  t.is(closingLine('# pass 2\n# fail 0\n'), '2 passed, 0 failed, 0 skipped');
});

test('scripts/count-results.mjs names every failed test but not the skipped ones, for the end of the CI log', (t) => {
  const log = [
    'ok 1 - a',
    'not ok 2 - b breaks',
    'not ok 3 - c # SKIP no edu',
    'vfio-core:test: test mock::tests::unmap_splits ... FAILED',
    '# pass 1',
    '# fail 1',
  ].join('\n');
  const r = spawnSync(process.execPath, [COUNT_RESULTS], { input: log, encoding: 'utf8' });
  t.is(r.status, 0);
  t.deepEqual(
    r.stderr.split('\n').filter((l) => l.startsWith('failed: ')),
    ['failed: b breaks', 'failed: mock::tests::unmap_splits'],
  );
});
