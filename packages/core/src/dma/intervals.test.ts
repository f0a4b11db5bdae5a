import test from 'ava';
import fc from 'fast-check';
import { addrOf, IntervalMap, pfn, pfnUp } from './intervals';

// pfn, pfnUp and addrOf take a Number path below 2^53 and a BigInt one above;
// both must give what the plain BigInt arithmetic gives.
/** Drops the Pages brand, for comparing with a plain number. */
const num = (n: number): number => n;
const addresses = fc.oneof(fc.bigInt({ min: 0n, max: 1n << 53n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

test('page numbers of byte addresses agree with BigInt shifts on both sides of 2^53', (t) => {
  fc.assert(
    fc.property(addresses, (a) => {
      t.is(num(pfn(a)), Number(a >> 12n));
      t.is(num(pfnUp(a)), Number((a + 0xfffn) >> 12n));
    }),
  );
  for (const a of [0n, 0xfffn, 0x1000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 0x1001n, (1n << 64n) - 1n]) {
    t.is(num(pfn(a)), Number(a >> 12n), `pfn(${a})`);
    t.is(num(pfnUp(a)), Number((a + 0xfffn) >> 12n), `pfnUp(${a})`);
  }
});

test('byte addresses of page numbers agree with BigInt shifts on both sides of 2^41 pages', (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 52 }), (p) => t.is(addrOf(p), BigInt(p) << 12n)));
  for (const p of [0, 1, 2 ** 41 - 1, 2 ** 41, 2 ** 52]) t.is(addrOf(p), BigInt(p) << 12n, `addrOf(${p})`);
});

test('intervals inserted in any order come out sorted, ascending inserts appending', (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 1000 }), { maxLength: 50 }), (starts) => {
      const m = new IntervalMap<number>();
      for (const s of starts) m.insert(s * 2, s * 2 + 1, s);
      const got = [...m.entries()].map(([s]) => s);
      t.deepEqual(got, [...starts].sort((a, b) => a - b).map((s) => s * 2));
    }),
  );
});
