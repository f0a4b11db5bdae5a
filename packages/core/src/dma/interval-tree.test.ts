import test from 'ava';
import fc from 'fast-check';
import { IntervalTree } from './interval-tree';

/** The same set as a plain list, checked by brute force. */
class Reference {
  list: [number, number][] = [];
  intersects(s: number, e: number): boolean {
    return this.list.some(([a, b]) => a < e && s < b);
  }
  removeOverlapping(s: number, e: number): [number, number][] {
    const hit = this.list.filter(([a, b]) => a < e && s < b);
    this.list = this.list.filter(([a, b]) => !(a < e && s < b));
    return hit.sort((x, y) => x[0] - y[0]);
  }
}

const op = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), start: fc.nat(200), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('remove' as const), start: fc.nat(200), len: fc.integer({ min: 0, max: 30 }) }),
);

test('any sequence of inserts and removals leaves the same intervals, lookups and removed lists as a brute-force list', (t) => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const tree = new IntervalTree();
      const ref = new Reference();
      for (const o of ops) {
        const [s, e] = [o.start, o.start + o.len];
        t.is(tree.intersects(s, e), ref.intersects(s, e));
        if (o.kind === 'insert') {
          if (ref.intersects(s, e)) t.throws(() => tree.insert(s, e), { instanceOf: RangeError, message: /overlaps one already held/ });
          else {
            tree.insert(s, e);
            ref.list.push([s, e]);
          }
        } else t.deepEqual(tree.removeOverlapping(s, e), ref.removeOverlapping(s, e));
        t.deepEqual(tree.entries(), [...ref.list].sort((x, y) => x[0] - y[0]));
        t.is(tree.size, ref.list.length);
      }
    }),
  );
});

test('intervals inserted top-down, as the kernel hands out IOVAs, come out in address order and leave by range', (t) => {
  const tree = new IntervalTree();
  const n = 100_000;
  for (let i = n - 1; i >= 0; i--) tree.insert(2 * i, 2 * i + 1);
  t.is(tree.size, n);
  t.deepEqual(tree.entries().slice(0, 3), [
    [0, 1],
    [2, 3],
    [4, 5],
  ]);
  t.deepEqual(tree.removeOverlapping(1000, 1005), [
    [1000, 1001],
    [1002, 1003],
    [1004, 1005],
  ]);
  t.is(tree.size, n - 3);
  t.false(tree.intersects(1000, 1005));
  t.true(tree.intersects(998, 1006));
});

test('an empty interval is refused, naming it', (t) => {
  t.throws(() => new IntervalTree().insert(5, 5), { instanceOf: RangeError, message: 'interval [5, 5) is empty' });
});
