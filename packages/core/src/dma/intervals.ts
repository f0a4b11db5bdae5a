// A sorted set of disjoint intervals keyed by 4 KiB page numbers. Page numbers
// are JS numbers: 2^64 bytes is 2^52 pages, inside Number's exact range, and
// number keys keep the shadow translator's hot path free of bigint arithmetic.

export const PAGE_SHIFT = 12n;
export const PAGE_SIZE = 4096n;

declare const pagesBrand: unique symbol;
/**
 * A number or count of 4 KiB pages, never bytes: where the policy's page
 * numbers meet byte addresses (identity.ts -> mappings.ts -> target.ts) the
 * type says which is which, and only pfn (or `asPages` for arithmetic
 * already in pages) make one.
 */
export type Pages = number & { readonly [pagesBrand]: true };

/** A value already counted in pages (page arithmetic on Pages gives number). */
export function asPages(n: number): Pages {
  return n as Pages;
}

/**
 * Below 2^53 a bigint converts to a Number exactly, and dividing or
 * multiplying an exact Number by 4096 (a power of two) stays exact. That path
 * allocates no intermediate BigInt: `addr >> 12n` does, and on the identity
 * plan of a 1 TiB layout the BigInt shifts and their garbage were most of the
 * time (CPU profile: the region filter and identityEntry, 44% of the plan).
 */
const EXACT = 2n ** 53n;
const EXACT_PAGES = 2 ** 41;

/** Page number of a 4 KiB-aligned byte address (of the page holding it, when not aligned). */
export function pfn(addr: bigint): Pages {
  return (addr < EXACT ? Math.floor(Number(addr) / 4096) : Number(addr >> PAGE_SHIFT)) as Pages;
}

/** Page number of the first page at or after a byte address (the end page of a range ending there). */
export function pfnUp(addr: bigint): Pages {
  return (addr < EXACT ? Math.ceil(Number(addr) / 4096) : Number((addr + 0xfffn) >> PAGE_SHIFT)) as Pages;
}

/** Byte address of a page number (or byte count of a page count). */
export function addrOf(pageNumber: Pages | number): bigint {
  return pageNumber < EXACT_PAGES ? BigInt(pageNumber * 4096) : BigInt(pageNumber) << PAGE_SHIFT;
}

/** Intervals [start, end) of pages, each carrying a value; no two overlap. */
export class IntervalMap<V> {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly values: V[] = [];

  get size(): number {
    return this.starts.length;
  }

  /** Index of the first interval whose end is after `page`. */
  private firstEndingAfter(page: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index range [i, j) of intervals overlapping [start, end). */
  overlapping(start: number, end: number): [number, number] {
    const i = this.firstEndingAfter(start);
    let j = i;
    while (j < this.starts.length && this.starts[j]! < end) j++;
    return [i, j];
  }

  /** Whether any interval overlaps [start, end). */
  intersects(start: number, end: number): boolean {
    const i = this.firstEndingAfter(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  /** Insert [start, end) -> value; the caller has checked that nothing overlaps. */
  insert(start: number, end: number, value: V): void {
    // Entries mostly arrive in ascending order (a layout, a batch): append.
    const n = this.starts.length;
    if (n === 0 || this.ends[n - 1]! <= start) {
      this.starts.push(start);
      this.ends.push(end);
      this.values.push(value);
      return;
    }
    const i = this.firstEndingAfter(start);
    this.starts.splice(i, 0, start);
    this.ends.splice(i, 0, end);
    this.values.splice(i, 0, value);
  }

  /** Remove intervals [i, j). */
  removeAt(i: number, j: number): void {
    this.starts.splice(i, j - i);
    this.ends.splice(i, j - i);
    this.values.splice(i, j - i);
  }

  startAt(i: number): number {
    return this.starts[i]!;
  }

  endAt(i: number): number {
    return this.ends[i]!;
  }

  valueAt(i: number): V {
    return this.values[i]!;
  }

  /** Every interval in address order. */
  *entries(): IterableIterator<[number, number, V]> {
    for (let i = 0; i < this.starts.length; i++) yield [this.starts[i]!, this.ends[i]!, this.values[i]!];
  }

  clear(): void {
    this.starts.length = 0;
    this.ends.length = 0;
    this.values.length = 0;
  }
}
