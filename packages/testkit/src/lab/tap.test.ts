import test from 'ava';
import { formatTap, parseTap } from './tap';

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
