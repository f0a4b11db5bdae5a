import test from 'ava';
import { parseResults as parseFile } from '../conformance';
import { compareResults } from './results';

const parseResults = (text: string) => parseFile(text, 'r.jsonl');

const run = (backend: string, cases: object[], end = true): string =>
  [
    JSON.stringify({ kind: 'run', suite: 'spapr', backend, format: 1 }),
    ...cases.map((c) => JSON.stringify({ kind: 'case', checks: [], aborted: null, ...c })),
    ...(end ? [JSON.stringify({ kind: 'end', cases: cases.length })] : []),
  ].join('\n');

const map = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'ok', value: 'ret=0' }] };

test('identical steps on both sides pass as one conformance case', (t) => {
  const r = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [map])));
  t.deepEqual(r, [{ name: 'conformance: map', ok: true }]);
});

test('a different errno fails and shows both sides', (t) => {
  const mock = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'EINVAL' }] };
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [mock])));
  t.false(r!.ok);
  t.deepEqual(r!.detail, ['step 1 differs:', '  MAP_DMA', '    kernel: ok ret=0', '    mock  : EINVAL']);
});

test('a different returned value fails even when both succeed', (t) => {
  const mock = { name: 'map', steps: [{ call: 'MAP_DMA', result: 'ok', value: 'ret=1' }] };
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [mock])));
  t.false(r!.ok);
});

test('a case the mock lacks fails', (t) => {
  const [r] = compareResults(parseResults(run('kernel', [map])), parseResults(run('mock', [])));
  t.deepEqual(r, { name: 'conformance: map', ok: false, detail: ['the mock run has no result for this case'] });
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
