// The policy's record of what one container holds, and the only path by which
// the policy changes it. Every change goes out as one batched call; the record
// is updated only after the target accepted the whole batch (batches are all
// or nothing), so record and container never disagree.
import { coalesceRuns } from '../vfio/index';
import { EntryLimitError } from './errors';
import { IntervalMap, pfn, pfnUp, type Pages } from './intervals';
import { setMap, setUnmap, type DmaTarget, type MapBatch, type UnmapBatch } from './target';
import { asBytes, type Bytes, type Hva, type Iova } from './units';

/**
 * One host mapping (one `vfio_dma` in the kernel): IOVA [iova, iova + size)
 * -> hva, in bytes, exactly as it goes into the batch and the ioctl.
 */
export interface HostEntry {
  /** IOVA of the first byte. */
  readonly iova: Iova;
  readonly size: Bytes;
  /** Host virtual address of the first byte. */
  readonly hva: Hva;
  /** DMA_READ | DMA_WRITE. */
  readonly perm: number;
  /**
   * Entries that share a unit may be merged by the target's coalescing; entries
   * of different units must stay separate kernel mappings, because type1v2
   * refuses an unmap that splits a mapping (vfio_dma_do_unmap: -EINVAL).
   */
  readonly unit: number;
  /** Whose entry this is, for the caller's own bookkeeping (the shadow policy puts its guest mapping id here). */
  readonly owner?: number;
}

/** An IOVA range [iova, iova + size) to unmap, covering whole entries. */
export interface IovaSpan {
  readonly iova: Iova;
  readonly size: Bytes;
}

/**
 * The record's keys: the 4 KiB pages an entry covers. Only the index uses
 * them (page numbers are Numbers, so lookups stay free of bigint
 * arithmetic); what is mapped and unmapped is always the entry's own bytes.
 */
function firstPage(iova: bigint): Pages {
  return pfn(iova);
}
function endPage(iova: bigint, size: bigint): Pages {
  return pfnUp(iova + size);
}

/** Counters a benchmark or report reads. */
export interface MappingStats {
  /** Batched calls made to the target (napi crossings). */
  calls: number;
  /** ioctls the target reported issuing. */
  ioctls: number;
  /** Live entries as the policy keeps them (upper bound of kernel `vfio_dma`s). */
  entries: number;
  peakEntries: number;
}

/** What one container holds, kept in step with it. */
export class ContainerMappings {
  private readonly live = new IntervalMap<HostEntry>();
  /**
   * Scratch arrays reused across calls, handed to the target as views of the
   * right length: a new ArrayBuffer per call is off-heap memory each young
   * GC must sweep, and the shadow policy makes a call per guest operation.
   */
  private mapScratch = { entries: new BigUint64Array(3 * 16), flags: new Uint32Array(16) };
  private unmapScratch = new BigUint64Array(2 * 16);

  private mapBatchOf(n: number): MapBatch {
    if (this.mapScratch.flags.length < n) this.mapScratch = { entries: new BigUint64Array(3 * n), flags: new Uint32Array(n) };
    return { entries: this.mapScratch.entries.subarray(0, 3 * n), flags: this.mapScratch.flags.subarray(0, n) };
  }

  private unmapBatchOf(n: number): UnmapBatch {
    if (this.unmapScratch.length < 2 * n) this.unmapScratch = new BigUint64Array(2 * n);
    return { entries: this.unmapScratch.subarray(0, 2 * n) };
  }
  readonly stats: MappingStats = { calls: 0, ioctls: 0, entries: 0, peakEntries: 0 };

  constructor(
    /** Names the container in messages: `container of group 12`. */
    readonly name: string,
    private readonly target: DmaTarget,
    /** The container's `dma_entry_limit`; checked before a call, so ENOSPC never reaches the kernel. */
    readonly entryLimit: number,
  ) {}

  get size(): number {
    return this.live.size;
  }

  /** Every live entry in IOVA order. */
  *entries(): IterableIterator<HostEntry> {
    for (const [, , e] of this.live.entries()) yield e;
  }

  /**
   * What the container pins: `charged` is what type1 charges to
   * RLIMIT_MEMLOCK (vfio_pin_pages_remote accounts per mapping, so a page
   * mapped at two IOVAs counts twice); `distinct` the host memory behind it.
   */
  pinnedBytes(): { readonly charged: bigint; readonly distinct: bigint } {
    let charged = 0n;
    const spans: [bigint, bigint][] = [];
    for (const [, , e] of this.live.entries()) {
      charged += e.size;
      spans.push([e.hva, e.hva + e.size]);
    }
    spans.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    let distinct = 0n;
    let end = -1n;
    for (const [s, e] of spans) {
      if (e <= end) continue;
      distinct += e - (s > end ? s : end);
      end = e;
    }
    return { charged, distinct };
  }

  /** Entries overlapping IOVA pages [start, end) (the shadow policy's page numbers). */
  overlapping(start: Pages | number, end: Pages | number): HostEntry[] {
    const [i, j] = this.live.overlapping(start, end);
    const out: HostEntry[] = [];
    for (let k = i; k < j; k++) out.push(this.live.valueAt(k));
    return out;
  }

  /**
   * Map `entries` (none may overlap a live one or each other). Issues as few
   * batches as the unit rule allows: usually one.
   */
  map(entries: readonly HostEntry[]): void {
    if (entries.length === 0) return;
    if (this.live.size + entries.length > this.entryLimit) {
      throw new EntryLimitError(
        `${this.name} would hold ${this.live.size + entries.length} mappings, over its dma_entry_limit of ${this.entryLimit} ` +
          `(the kernel would answer ENOSPC); raise vfio_iommu_type1's dma_entry_limit module parameter or map fewer, larger regions`,
      );
    }
    for (const batch of splitByUnit(entries)) {
      const b = this.mapBatchOf(batch.length);
      batch.forEach((e, i) => setMap(b, i, e.iova, e.hva, e.size, e.perm));
      // A refusal propagates as the target threw it (vfio-core's VfioError
      // names the ioctl, the container, the batch entry and the fix); the
      // record is untouched, since the batch was all or nothing.
      const ioctls = this.target.mapBatch(b);
      this.stats.calls++;
      this.stats.ioctls += ioctls;
      for (const e of batch) this.live.insert(firstPage(e.iova), endPage(e.iova, e.size), e);
      this.noteSize();
    }
  }

  /**
   * Unmap IOVA ranges, each covering whole live entries (the caller splits
   * nothing). One batched call; the target may coalesce neighbours, which is
   * safe for unmaps because every range edge is an entry edge.
   */
  unmap(given: readonly IovaSpan[]): void {
    if (given.length === 0) return;
    // Sorted and joined where they touch: a kernel mapping merged from two
    // entries must go in one range, whatever order the caller listed them in.
    // Joined too across a gap that holds no live entry: type1v2 removes every
    // vfio_dma wholly inside [iova, iova + size) and refuses only a range
    // whose ends split one (vfio_dma_do_unmap), so one VFIO_IOMMU_UNMAP_DMA
    // serves where one per run would otherwise go out. This relies on the
    // record holding all the container has, which it does: it is the only
    // path by which the policy maps.
    const ranges: { start: Iova; end: bigint }[] = [];
    for (const r of given.length === 1 ? given : [...given].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0))) {
      const last = ranges[ranges.length - 1];
      const end = r.iova + r.size;
      if (last && (r.iova <= last.end || this.isEmpty(endPage(last.end, 0n), firstPage(r.iova)))) last.end = end > last.end ? end : last.end;
      else ranges.push({ start: r.iova, end });
    }
    const b = this.unmapBatchOf(ranges.length);
    ranges.forEach((r, i) => setUnmap(b, i, r.start, asBytes(r.end - r.start)));
    const ioctls = this.target.unmapBatch(b);
    this.stats.calls++;
    this.stats.ioctls += ioctls;
    for (const r of ranges) {
      const [i, j] = this.live.overlapping(firstPage(r.start), endPage(r.end, 0n));
      this.live.removeAt(i, j);
    }
    this.noteSize();
  }

  /** Unmap every live entry in one call: one range from the first to the last, as nothing else lies between them. */
  unmapAll(): void {
    if (this.live.size === 0) return;
    const first = this.live.valueAt(0);
    const last = this.live.valueAt(this.live.size - 1);
    this.unmap([{ iova: first.iova, size: asBytes(last.iova + last.size - first.iova) }]);
  }

  /** True when no live entry overlaps IOVA pages [start, end). */
  private isEmpty(start: number, end: number): boolean {
    const [i, j] = this.live.overlapping(start, end);
    return i === j;
  }

  private noteSize(): void {
    this.stats.entries = this.live.size;
    if (this.live.size > this.stats.peakEntries) this.stats.peakEntries = this.live.size;
  }
}

/**
 * Split entries into batches so that no batch holds two entries of different
 * units that vfio-core would coalesce into one mapping. Entries are sorted by
 * IOVA first; only IOVA neighbours can merge (entries never overlap), so an
 * entry can merge only with the one just before it, and vfio-core's own rule
 * (coalesceRuns over the sorted entries) says whether it would.
 */
export function splitByUnit(entries: readonly HostEntry[]): HostEntry[][] {
  if (entries.length === 1) return [entries as HostEntry[]];
  const sorted = [...entries].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  const joinsPrevious = joinsPreviousOf(sorted);
  const batches: HostEntry[][] = [];
  /** Per batch, the sorted index of its entry with the highest IOVA so far. */
  const lastOf: number[] = [];
  sorted.forEach((e, i) => {
    let k = 0;
    while (k < batches.length && lastOf[k] === i - 1 && joinsPrevious[i] && sorted[i - 1]!.unit !== e.unit) k++;
    if (k === batches.length) batches.push([]);
    batches[k]!.push(e);
    lastOf[k] = i;
  });
  return batches;
}

/** For each sorted entry, whether one mapBatch of all of them would coalesce it with the one before. */
function joinsPreviousOf(sorted: readonly HostEntry[]): boolean[] {
  const entries = new BigUint64Array(3 * sorted.length);
  const flags = new Uint32Array(sorted.length);
  sorted.forEach((e, i) => {
    entries[3 * i] = e.iova;
    entries[3 * i + 1] = e.hva;
    entries[3 * i + 2] = e.size;
    flags[i] = e.perm;
  });
  const joins = sorted.map(() => true);
  for (const start of coalesceRuns(entries, flags)) joins[start] = false;
  return joins;
}
