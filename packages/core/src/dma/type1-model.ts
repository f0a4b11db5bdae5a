// A plain reference model of a type1v2 container's DMA mappings, used to
// check what reaches a target: as a witness wrapped around a real target (the
// vfio-core mock or the kernel), it records the container's contents from the
// calls that succeeded and says when the target accepted a call the kernel
// would refuse. It coalesces batch entries with vfio-core's own rule
// (coalesceRuns), so a later split shows as EINVAL here.
import { coalesceRuns } from '../vfio/index';
import type { AddressRange } from './guest';
import { DmaTargetError } from './errors';
import { hex } from './layout';
import type { DmaTarget, HostIommuInfo, MapBatch, UnmapBatch } from './target';

/** One kernel mapping (`struct vfio_dma`). */
export interface ModelMapping {
  readonly iova: bigint;
  readonly size: bigint;
  readonly vaddr: bigint;
  readonly flags: number;
}

/**
 * The model's own refusal, when it stands alone as the target: a DMA target
 * error like any other (code DMA_TARGET_FAILED), carrying the errno the
 * kernel would return.
 */
export class ModelError extends DmaTargetError {
  constructor(errno: string, message: string) {
    super(message, errno);
  }
}

export class Type1Model implements DmaTarget {
  private maps: ModelMapping[] = [];
  /** Calls the wrapped target accepted although the kernel's rules refuse them. */
  readonly disagreements: string[] = [];
  mapCalls = 0;
  unmapCalls = 0;

  constructor(
    private readonly host: HostIommuInfo,
    private readonly inner?: DmaTarget,
  ) {}

  /** The container's mappings, in IOVA order. */
  mappings(): readonly ModelMapping[] {
    return this.maps;
  }


  mapBatch(batch: MapBatch): number {
    const merged = coalesce(batch);
    const problem = this.mapProblem(merged);
    const n = this.call(() => this.inner?.mapBatch(batch), problem) ?? merged.length;
    this.maps = [...this.maps, ...merged].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    this.mapCalls++;
    return n;
  }

  unmapBatch(batch: UnmapBatch): number {
    const ranges: AddressRange[] = [];
    for (let i = 0; i < batch.entries.length / 2; i++) ranges.push({ start: batch.entries[2 * i]!, size: batch.entries[2 * i + 1]! });
    let problem: ModelError | undefined;
    const keep: ModelMapping[] = [];
    for (const m of this.maps) {
      const end = m.iova + m.size;
      const hit = ranges.find((r) => r.start < end && m.iova < r.start + r.size);
      if (!hit) keep.push(m);
      // vfio_dma_do_unmap (v2): a range edge inside a mapping is -EINVAL.
      else if (m.iova < hit.start || end > hit.start + hit.size)
        problem ??= new ModelError('EINVAL', `unmap ${hex(hit.start)}+${hex(hit.size)} splits the mapping ${hex(m.iova)}+${hex(m.size)}`);
    }
    for (const r of ranges) if (r.size === 0n || r.start % 4096n !== 0n || r.size % 4096n !== 0n) problem ??= new ModelError('EINVAL', `unaligned unmap ${hex(r.start)}+${hex(r.size)}`);
    const n = this.call(() => this.inner?.unmapBatch(batch), problem) ?? ranges.length;
    this.maps = keep;
    this.unmapCalls++;
    return n;
  }

  private call(f: () => number | undefined, problem: ModelError | undefined): number | undefined {
    let n: number | undefined;
    try {
      n = f();
    } catch (e) {
      if (!problem) this.disagreements.push(`target refused a call the kernel accepts: ${(e as Error).message}`);
      throw e;
    }
    if (problem) {
      if (this.inner) this.disagreements.push(`target accepted a call the kernel refuses with ${problem.errno}: ${problem.message}`);
      else throw problem;
    }
    return n;
  }

  private mapProblem(merged: readonly ModelMapping[]): ModelError | undefined {
    if (this.maps.length + merged.length > this.host.dmaEntryLimit)
      return new ModelError('ENOSPC', `${this.maps.length + merged.length} mappings exceed dma_entry_limit ${this.host.dmaEntryLimit}`);
    const all = [...this.maps, ...merged].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    for (let i = 1; i < all.length; i++)
      if (all[i]!.iova < all[i - 1]!.iova + all[i - 1]!.size)
        return new ModelError('EEXIST', `map at ${hex(all[i]!.iova)} overlaps the mapping at ${hex(all[i - 1]!.iova)}`);
    for (const m of merged) {
      if (m.size === 0n || m.iova % 4096n !== 0n || m.size % 4096n !== 0n || m.vaddr % 4096n !== 0n)
        return new ModelError('EINVAL', `unaligned map ${hex(m.iova)}+${hex(m.size)}`);
      // vfio_iommu_iova_dma_valid: the whole range inside one IOVA range.
      if (!this.host.iovaRanges.some((r) => r.start <= m.iova && m.iova + m.size <= r.start + r.size))
        return new ModelError('EINVAL', `map ${hex(m.iova)}+${hex(m.size)} is outside the IOVA ranges`);
    }
    return undefined;
  }
}

/** The kernel mappings one mapBatch of `batch` makes: one per run vfio-core coalesces. */
export function coalesce(batch: MapBatch): ModelMapping[] {
  const n = batch.flags.length;
  const starts = coalesceRuns(batch.entries.subarray(0, 3 * n), batch.flags.subarray(0, n));
  const out: ModelMapping[] = [];
  for (let r = 0; r < starts.length; r++) {
    const i = starts[r]!;
    const end = r + 1 < starts.length ? starts[r + 1]! : n;
    let size = 0n;
    for (let k = i; k < end; k++) size += batch.entries[3 * k + 2]!;
    out.push({ iova: batch.entries[3 * i]!, vaddr: batch.entries[3 * i + 1]!, size, flags: batch.flags[i]! });
  }
  return out;
}
