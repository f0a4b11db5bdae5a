import test from 'ava';
import { CaseLine, ResultsFile } from '../conformance';
import { compareCompat, COMPAT_DIFFERENCES, IOMMUFD_VTD_HOST, kernelVersion, runScript } from './index';

function results(backend: string, cases: Record<string, string>): ResultsFile {
  const lines: CaseLine[] = Object.entries(cases).map(([name, result]) => ({
    kind: 'case',
    name,
    steps: [{ call: 'SET_IOMMU TYPE1v2 again', result }],
    checks: [],
    aborted: null,
  }));
  return { backend, suite: 'x86', cases: lines, complete: true };
}

test('a compat case answering as legacy type1 passes under its own name', (t) => {
  const [r] = compareCompat(results('kernel', { same: 'ok' }), results('mock', { same: 'ok' }), {});
  t.deepEqual(r, { name: 'same', ok: true });
});

test('an unlisted difference between the compat container and legacy type1 fails with both sides shown', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'EINVAL' }), {});
  t.false(r!.ok);
  t.true(r!.detail!.some((l) => l.includes('kernel: ok')) && r!.detail!.some((l) => l.includes('mock  : EINVAL')));
});

test('a listed difference passes while it still differs, its name carrying the reason and its detail the steps', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'EINVAL' }), { c: 'repeating it succeeds' });
  t.true(r!.ok);
  t.is(r!.name, 'c (differs from legacy type1, as the kernel explains: repeating it succeeds)');
  t.true(r!.detail!.some((l) => l.includes('compat: ok')));
});

test('a listed difference that no longer differs fails, so the list cannot go stale', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'ok' }), { c: 'repeating it succeeds' });
  t.false(r!.ok);
  t.regex(r!.detail![0]!, /remove it from the list/);
});

test('a listed difference whose case no longer runs under that name fails, naming the entry', (t) => {
  const reports = compareCompat(results('kernel', { renamed: 'ok' }), results('mock', { renamed: 'EINVAL' }), { old: 'repeating it succeeds' });
  t.deepEqual(
    reports.map((r) => [r.name, r.ok]),
    [
      ['renamed', false],
      ['COMPAT_DIFFERENCES entry "old"', false],
    ],
  );
  t.regex(reports[1]!.detail![0]!, /renamed or dropped it; rename or remove the entry/);
});

test('every listed compat difference has a reason naming where in the kernel it comes from', (t) => {
  for (const [name, why] of Object.entries(COMPAT_DIFFERENCES)) {
    t.regex(why, /\b(VC|IOPT|GROUP|iommufd_|iopt_|vfio_)/, name);
  }
});

test('the guest script runs the iommufd suite and the x86 suite on the kernel, then records the iommufd nodes', (t) => {
  const ctx = { repoRoot: '/r', cacheDir: '/c', outDir: '/o', nodePath: '/n', guestTimeoutMs: 1, log: () => {} };
  const script = runScript(ctx, IOMMUFD_VTD_HOST, '/q/qemu-system-x86_64');
  const iommufd = script.indexOf('vfio-lab iommufd --backend kernel');
  const x86 = script.indexOf('vfio-lab x86 --backend kernel');
  t.true(iommufd > 0 && x86 > iommufd);
  t.regex(script, /ls -l \/dev\/iommu/);
  t.regex(script, /VFIOKIT_LAB_QEMU_IOMMUFD='\/q\/qemu-system-x86_64' .* \.iommufd-lab\.js/);
});

test('the version the mock is told is the lab kernel source version, without the "linux" build-kernel.sh writes', (t) => {
  t.is(kernelVersion({ vmlinuz: '/k/bzImage', moduleDir: '', release: 'linux 7.2.13-1' }), '7.2.13-1');
});
