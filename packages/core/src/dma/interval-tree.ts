// A set of disjoint page intervals [start, end) in a treap: a binary search
// tree on `start` whose nodes also carry a random priority, heap-ordered, so
// its expected depth is O(log n) whatever order the intervals arrive in.
//
// IntervalMap (intervals.ts) keeps sorted arrays, right for tables built in
// ascending order and read by index; the Linux importer's tables are not
// built that way. The kernel's IOVA allocator hands out addresses top-down
// (alloc_iova_fast in drivers/iommu/iova.c searches from the limit downward),
// so each new map lands below every live one, and a splice into a sorted
// array moves them all: O(n) per map, O(n^2) for a trace that holds n
// mappings at once. Here insert, remove and lookup cost O(log n) expected.
//
// The priorities come from a fixed-seed xorshift, so a given sequence of
// operations builds the same tree on every run.

interface Node {
  readonly start: number;
  readonly end: number;
  readonly priority: number;
  left: Node | null;
  right: Node | null;
}

/** Nodes of `n` with start < key on the left, the rest on the right. */
function splitByStart(n: Node | null, key: number): [Node | null, Node | null] {
  if (n === null) return [null, null];
  if (n.start < key) {
    const [l, r] = splitByStart(n.right, key);
    n.right = l;
    return [n, r];
  }
  const [l, r] = splitByStart(n.left, key);
  n.left = r;
  return [l, n];
}

/**
 * Nodes of `n` with end <= key on the left, the rest on the right. The
 * intervals are disjoint, so their ends are in the same order as their
 * starts and this split keeps the tree ordered.
 */
function splitByEnd(n: Node | null, key: number): [Node | null, Node | null] {
  if (n === null) return [null, null];
  if (n.end <= key) {
    const [l, r] = splitByEnd(n.right, key);
    n.right = l;
    return [n, r];
  }
  const [l, r] = splitByEnd(n.left, key);
  n.left = r;
  return [l, n];
}

/** One tree of every node of `a` then every node of `b` (all of a's below all of b's). */
function merge(a: Node | null, b: Node | null): Node | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return a;
  }
  b.left = merge(a, b.left);
  return b;
}

function collect(n: Node | null, out: [number, number][]): void {
  // Recursion depth is the tree's depth, O(log n) expected.
  if (n === null) return;
  collect(n.left, out);
  out.push([n.start, n.end]);
  collect(n.right, out);
}

/** Disjoint, non-empty intervals [start, end) of page numbers. */
export class IntervalTree {
  private root: Node | null = null;
  private count = 0;
  private seed = 0x2545f491;

  get size(): number {
    return this.count;
  }

  /** xorshift32 (Marsaglia 2003): cheap, and deterministic for a reproducible shape. */
  private nextPriority(): number {
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    return this.seed;
  }

  /** The interval with the lowest start among those ending after `page`. */
  private firstEndingAfter(page: number): Node | null {
    let found: Node | null = null;
    let n = this.root;
    while (n !== null) {
      if (n.end > page) {
        found = n;
        n = n.left;
      } else n = n.right;
    }
    return found;
  }

  /** Whether any interval overlaps [start, end). */
  intersects(start: number, end: number): boolean {
    const n = this.firstEndingAfter(start);
    return n !== null && n.start < end;
  }

  /** Add [start, end), which must be non-empty and overlap no interval held. */
  insert(start: number, end: number): void {
    if (!(start < end)) throw new RangeError(`interval [${start}, ${end}) is empty`);
    if (this.intersects(start, end)) throw new RangeError(`interval [${start}, ${end}) overlaps one already held`);
    const [l, r] = splitByStart(this.root, start);
    this.root = merge(merge(l, { start, end, priority: this.nextPriority(), left: null, right: null }), r);
    this.count++;
  }

  /** Remove every interval overlapping [start, end); returns them, whole, in address order. */
  removeOverlapping(start: number, end: number): [number, number][] {
    const [below, above] = splitByStart(this.root, end);
    const [before, hit] = splitByEnd(below, start);
    this.root = merge(before, above);
    const out: [number, number][] = [];
    collect(hit, out);
    this.count -= out.length;
    return out;
  }

  /** Every interval in address order. */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    collect(this.root, out);
    return out;
  }
}
