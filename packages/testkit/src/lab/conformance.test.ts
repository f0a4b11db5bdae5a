import test from 'ava';
import { compareResults, compareSteps, expectedStopFor, parseResults } from './conformance';

const run = (backend: string): string => JSON.stringify({ kind: 'run', suite: 'x86', backend, format: 1 });
const end = (n: number): string => JSON.stringify({ kind: 'end', cases: n });
const kase = (name: string, steps: object[], extra: object = {}): string =>
  JSON.stringify({ kind: 'case', name, steps, checks: [], aborted: null, ...extra });

const mapOk = { call: 'MAP_DMA iova=0x1000', result: 'ok' };
const mapExists = { call: 'MAP_DMA iova=0x1000', result: 'EEXIST' };

test('cases with the same steps on both sides pass', (t) => {
  const k = parseResults([run('kernel'), kase('overlap', [mapOk, mapExists]), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('overlap', [mapOk, mapExists]), end(1)].join('\n'), 'm');
  t.deepEqual(compareResults(k, m), [{ name: 'overlap', ok: true }]);
});

test('a different errno fails the case and prints both sides', (t) => {
  const k = parseResults([run('kernel'), kase('overlap', [mapOk, mapExists]), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('overlap', [mapOk, { ...mapExists, result: 'EINVAL' }]), end(1)].join('\n'), 'm');
  t.deepEqual(compareResults(k, m), [
    { name: 'overlap', ok: false, detail: ['step 2 differs:', '  MAP_DMA iova=0x1000', '    kernel: EEXIST', '    mock  : EINVAL'] },
  ]);
});

test('a different returned value is a disagreement', (t) => {
  const lines = compareSteps([{ call: 'UNMAP', result: 'ok', value: 'size=0x1000' }], [{ call: 'UNMAP', result: 'ok', value: 'size=0x0' }], 'kernel', 'mock');
  t.deepEqual(lines, ['step 1 differs:', '  UNMAP', '    kernel: ok size=0x1000', '    mock  : ok size=0x0']);
});

test('a failed check fails the case even when both sides agree', (t) => {
  const check = { checks: [{ what: 'the DMA wrote the pattern', ok: false, detail: 'all zero' }] };
  const k = parseResults([run('kernel'), kase('dma', [], check), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('dma', []), end(1)].join('\n'), 'm');
  t.deepEqual(compareResults(k, m), [{ name: 'dma', ok: false, detail: ['kernel: check failed: the DMA wrote the pattern (all zero)'] }]);
});

test('a run without its end line fails, and so does every case it never reached', (t) => {
  const k = parseResults([run('kernel'), kase('a', []), kase('b', []), end(2)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('a', [])].join('\n'), 'm');
  t.deepEqual(
    compareResults(k, m).map((r) => [r.name, r.ok]),
    [
      ['a', true],
      ['b', false],
      ['the mock run finishes', false],
    ],
  );
});

test('a case that stopped early fails with its reason', (t) => {
  const k = parseResults([run('kernel'), kase('a', [], { aborted: 'open the group failed with ENOENT' }), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('a', [], { aborted: 'open the group failed with ENOENT' }), end(1)].join('\n'), 'm');
  t.deepEqual(compareResults(k, m)[0]!.detail, ['kernel: stopped early: open the group failed with ENOENT', 'mock: stopped early: open the group failed with ENOENT']);
});

test('a results file of another format is refused', (t) => {
  t.throws(() => parseResults(JSON.stringify({ kind: 'run', suite: 'x86', backend: 'mock', format: 2 }), 'f'), { message: /format 2/ });
});

test('a results file without its end line is incomplete', (t) => {
  t.false(parseResults([run('kernel'), kase('a', [])].join('\n'), 'k').complete);
});

test('an end line that counts more cases than were read leaves the run incomplete', (t) => {
  t.false(parseResults([run('kernel'), kase('a', []), end(2)].join('\n'), 'k').complete);
});

test('lines ending in CR, as a guest console writes them, parse', (t) => {
  const r = parseResults([run('kernel'), kase('a', []), end(1)].join('\r\n'), 'k');
  t.deepEqual([r.cases.map((c) => c.name), r.complete], [['a'], true]);
});

test('a line that is not JSON is an error naming the file and the line', (t) => {
  t.throws(() => parseResults([run('kernel'), 'Oops'].join('\n'), 'k.jsonl'), { message: /^k\.jsonl line 2 is not JSON/ });
});

const setIommuEperm = { call: 'SET_IOMMU TYPE1v2', result: 'EPERM' };
const eperm = { aborted: 'SET_IOMMU TYPE1v2 failed with EPERM' };

test('on a host without MSI isolation both sides stopping at SET_IOMMU with EPERM is agreement', (t) => {
  const k = parseResults([run('kernel'), kase('map', [setIommuEperm], eperm), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('map', [setIommuEperm], eperm), end(1)].join('\n'), 'm');
  t.deepEqual(compareResults(k, m, expectedStopFor({ msiIsolated: false, allowUnsafeInterrupts: false })), [{ name: 'map', ok: true }]);
});

test('the same stop is still a failure where the host isolates MSIs, or when only one side stops', (t) => {
  const k = parseResults([run('kernel'), kase('map', [setIommuEperm], eperm), end(1)].join('\n'), 'k');
  const m = parseResults([run('mock'), kase('map', [setIommuEperm], eperm), end(1)].join('\n'), 'm');
  t.false(compareResults(k, m, expectedStopFor({ msiIsolated: true, allowUnsafeInterrupts: false }))[0]!.ok);
  const m2 = parseResults([run('mock'), kase('map', [{ ...setIommuEperm, result: 'ok' }]), end(1)].join('\n'), 'm');
  t.false(compareResults(k, m2, expectedStopFor({ msiIsolated: false, allowUnsafeInterrupts: false }))[0]!.ok);
});
