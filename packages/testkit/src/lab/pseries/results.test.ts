import test from 'ava';
import { compareResults, parseResults } from './results';

const run = (backend: string, cases: object[], end = true): string =>
  [
    JSON.stringify({ kind: 'run', suite: 'spapr', backend, format: 1 }),
    ...cases.map((c) => JSON.stringify({ kind: 'case', checks: [], aborted: null, ...c })),
    ...(end ? [JSON.stringify({ kind: 'end', cases: cases.length })] : []),
  ].join('\n');

const map = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'ok', value: 'ret=0' }] };

test('a results file with its end line is complete', (t) => {
  t.true(parseResults(run('kernel', [map])).complete);
});

test('a results file without its end line is incomplete', (t) => {
  t.false(parseResults(run('kernel', [map], false)).complete);
});

test('a line that is not JSON is an error naming its number', (t) => {
  t.throws(() => parseResults(`${run('kernel', [map])}\nOops`), { message: /line 4 is not JSON/ });
});

test('identical steps on both sides pass as one conformance case', (t) => {
  const r = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [map])));
  t.deepEqual(r, [{ name: 'conformance: map', ok: true }]);
});

test('a different errno fails and shows both sides', (t) => {
  const mock = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'EINVAL' }] };
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [mock])));
  t.false(r!.ok);
  t.deepEqual(r!.detail, ['kernel and mock disagree:', '!= kernel: MAP_DMA -> ok ret=0', '   mock:   MAP_DMA -> EINVAL']);
});

test('a different returned value fails even when both succeed', (t) => {
  const mock = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'ok', value: 'ret=1' }] };
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [mock])));
  t.false(r!.ok);
});

test('a case the mock lacks fails', (t) => {
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [])));
  t.deepEqual(r, { name: 'conformance: map', ok: false, detail: ['the mock run has no such case'] });
});

test('a case the kernel lacks fails', (t) => {
  const r = compareResults(parseResults(run('kernel', [])), parseResults(run('mock', [map])));
  t.is(r.length, 1);
  t.false(r[0]!.ok);
});

test('a kernel-only case passes on its own checks', (t) => {
  const dma = { name: 'kernel-only: dma', checks: [{ what: 'landed', ok: true }] };
  const r = compareResults(parseResults(run('kernel', [dma])), parseResults(run('mock', [])));
  t.deepEqual(r, [{ name: 'dma', ok: true, detail: ['held: landed'] }]);
});

test('a kernel-only case with a failed check fails', (t) => {
  const dma = { name: 'kernel-only: dma', checks: [{ what: 'did not land', ok: false }] };
  const [r] = compareResults(parseResults(run('kernel', [dma])), parseResults(run('mock', [])));
  t.false(r!.ok);
});

test('an aborted case fails even when its steps agree', (t) => {
  const k = { ...map, aborted: 'SET_IOMMU failed with EINVAL' };
  const [r] = compareResults(parseResults(run('kernel', [k])), parseResults(run('mock', [map])));
  t.false(r!.ok);
});
