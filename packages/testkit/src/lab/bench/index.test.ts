import test from 'ava';
import { LabError } from '../errors';
import { NAMED_ONLY, PROFILES } from '../main';
import { benchFigures, combinePairs, formatFigures, kernelRatios, medianKernelRatios, type KernelSide, type VfiokitSide } from './index';

/** A pinning ladder of 64 MiB and 128 MiB taking these many ns. */
const ladder = (ns64: number, ns128: number) => [
  { bytes: 64 << 20, ns: ns64 },
  { bytes: 128 << 20, ns: ns128 },
];

const kernel: KernelSide = {
  entries: 16384,
  ram_bytes: 128 << 20,
  a_map_scattered_ns: 1_000_000,
  b_per_section_ns: 50_000,
  b_per_leaf_ns: 4_000_000,
  d_unmap_per_range_ns: 800_000,
  d_unmap_all_ns: 100_000,
  c_pin: ladder(10_000_000, 20_000_000),
};
const vfiokit: VfiokitSide = {
  entries: 16384,
  ram_bytes: 128 << 20,
  leaves: 32736,
  b_ioctls: 3,
  a_map_scattered_ns: 1_300_000,
  b_coalesced_ns: 90_000,
  d_unmap_batch_ns: 900_000,
  d_unmap_all_ns: 110_000,
  c_pin: ladder(11_000_000, 21_000_000),
};

test('each figure puts vfiokit beside the kernel as a ratio, (a) judged against 1.2x', (t) => {
  const f = benchFigures(kernel, vfiokit);
  t.deepEqual(
    f.map((x) => x.id),
    ['a', 'b-leaf', 'b-section', 'c-64M', 'c-128M', 'd-per-range', 'd-all'],
  );
  const a = f.find((x) => x.id === 'a')!;
  t.is(a.ratio, 1.3);
  t.is(a.ok, false);
  t.is(f.find((x) => x.id === 'b-leaf')!.ratio, 90_000 / 4_000_000);
  // Pinning per GiB: 10 ms for 64 MiB is 160 ms per GiB.
  t.is(f.find((x) => x.id === 'c-64M')!.kernel, 160);
  t.true(formatFigures(f, medianKernelRatios([kernel])).some((l) => l.startsWith('a ') && l.includes('MISS')));
  t.deepEqual(
    kernelRatios(kernel).map((r) => r.ratio),
    [80, 8],
  );
});

test('two sides that measured different work are refused, naming both', (t) => {
  const e = t.throws(() => benchFigures(kernel, { ...vfiokit, entries: 1 }), { instanceOf: LabError });
  t.regex(e!.message, /C 16384 entries .* vfiokit 1 /);
});

test('the bench runs only when named: pnpm lab alone does not boot it', (t) => {
  t.false(PROFILES.some((p) => p.name === 'bench'));
  t.true(NAMED_ONLY.some((p) => p.name === 'bench'));
});

test('pairs combine as the median of each side and of the pair-by-pair ratios', (t) => {
  const pairs = [1_000_000, 3_000_000, 1_100_000].map((c, i) =>
    benchFigures({ ...kernel, a_map_scattered_ns: c }, { ...vfiokit, a_map_scattered_ns: [1_100_000, 3_000_000, 1_000_000][i]! }),
  );
  const a = combinePairs(pairs).find((f) => f.id === 'a')!;
  // Ratios 1.1, 1.0 and 0.909: the median is 1.0, though the medians of
  // the two sides (1.1 ms each) happen to agree too.
  t.is(a.ratio, 1);
  t.is(a.kernel, 1100);
  t.true(a.ok);
  t.throws(() => combinePairs([]), { instanceOf: LabError });
});
