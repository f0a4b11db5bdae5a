// Traces and layouts that a recording cannot give: a guest that turns its
// IOMMU on after boot, many devices sharing one container, a fragmented
// 1 TiB layout. Deterministic for a given seed, so benchmarks and tests
// replay the same thing every run.
import type { GuestMemoryLayout, RamRegion } from './guest';
import type { GuestIommuOp } from './ops';
import type { DmaTrace } from './trace-format';
import { DMA_READ, DMA_RW } from './target';
import { InvalidLayoutError } from './errors';

const P = 4096n;

/** A small fast PRNG (mulberry32): the same seed gives the same trace. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNIT = 2n << 20n;
const LAYOUT_START = 4n << 30n;
/** The widest hole between two fragments, in units. */
const MAX_HOLE_UNITS = 32n;

/**
 * `fragments` RAM regions adding up to `total` bytes, each a whole number of
 * 2 MiB, with holes between them of 2 MiB to 64 MiB, starting at 4 GiB (as
 * RAM above the PCI hole does) and never crossing the x86 MSI window.
 *
 * Inputs that cannot be met are refused before any work, naming the limit:
 * a `total` that is not a positive multiple of 2 MiB, more fragments than
 * 2 MiB units in `total`, or a layout that could end past 2^64. The work is
 * bounded by the fragment count (never a search for cut points that do not
 * exist).
 */
export function fragmentedLayout(opts: { total?: bigint; fragments?: number; seed?: number } = {}): GuestMemoryLayout {
  const total = opts.total ?? 1n << 40n;
  const n = opts.fragments ?? 4096;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidLayoutError(`a fragmented layout needs a whole number of fragments of at least 1, not ${n}`);
  if (total <= 0n || total % UNIT !== 0n) {
    throw new InvalidLayoutError(`a fragmented layout's total of ${total} bytes is not a positive multiple of 2 MiB (each fragment is a whole number of 2 MiB); round it to one`);
  }
  const units = total / UNIT;
  if (BigInt(n) > units) {
    throw new InvalidLayoutError(
      `${total / (1n << 20n)} MiB holds at most ${units} fragments of 2 MiB, not ${n}: ask for at most ${units} fragments or more memory`,
    );
  }
  // The worst case of the holes drawn below: every one 64 MiB.
  const worstEnd = LAYOUT_START + total + BigInt(n) * MAX_HOLE_UNITS * UNIT;
  if (worstEnd > 1n << 64n) {
    throw new InvalidLayoutError(`${n} fragments of ${total} bytes in all could end at ${worstEnd}, past the 64-bit guest physical address space`);
  }
  const rnd = prng(opts.seed ?? 1);
  // Split `units` into n random positive parts: n - 1 distinct cut points
  // among the units - 1 between units. Numbers are exact here (units < 2^43).
  const slots = Number(units - 1n);
  const cuts = distinctSample(rnd, n - 1, slots);
  const regions: RamRegion[] = [];
  let prev = 0n;
  let at = LAYOUT_START;
  [...cuts.map(BigInt), units].forEach((c, i) => {
    const size = (c - prev) * UNIT;
    prev = c;
    regions.push({ name: `frag${i}`, gpa: at, size, source: 'boot' });
    at += size + UNIT * BigInt(1 + Math.floor(rnd() * Number(MAX_HOLE_UNITS)));
  });
  return { regions };
}

/**
 * `k` distinct values of 1..`slots`, ascending. Rejection sampling on
 * whichever of the chosen set or its complement is the smaller, so each draw
 * succeeds with probability at least 1/2 and a dense request (every slot) is
 * as cheap as a sparse one.
 */
function distinctSample(rnd: () => number, k: number, slots: number): number[] {
  const draw = (count: number): Set<number> => {
    const picked = new Set<number>();
    while (picked.size < count) picked.add(1 + Math.floor(rnd() * slots));
    return picked;
  };
  if (k <= slots - k) return [...draw(k)].sort((a, b) => a - b);
  const left = draw(slots - k);
  const out: number[] = [];
  for (let v = 1; v <= slots; v++) if (!left.has(v)) out.push(v);
  return out;
}

/** A DMA-API-like IOVA allocator: downward from 4 GiB, as Linux's iommu-dma hands them out. */
class IovaAllocator {
  private next = 1n << 32n;
  private readonly free: bigint[][] = [];
  alloc(pages: bigint): bigint {
    const bucket = this.free[Number(pages)];
    if (bucket && bucket.length > 0) return bucket.pop()!;
    this.next -= pages * P;
    // Linux keeps the x86 MSI window out of every DMA domain's IOVAs
    // (intel-iommu reserves IOAPIC_RANGE_START..END in the domain's iova tree).
    if (this.next < 0xfef00000n && this.next + pages * P > 0xfee00000n) this.next = 0xfee00000n - pages * P;
    return this.next;
  }
  release(iova: bigint, pages: bigint): void {
    (this.free[Number(pages)] ??= []).push(iova);
  }
}

interface Live {
  readonly iova: bigint;
  readonly pages: bigint;
}

function dmaTraffic(
  rnd: () => number,
  ops: GuestIommuOp[],
  domain: number,
  alloc: IovaAllocator,
  live: Live[],
  ramPages: bigint,
  count: number,
  sync: 'each-op' | 'invalidate',
): void {
  for (let k = 0; k < count; k++) {
    if (live.length > 0 && (rnd() < 0.45 || live.length > 200)) {
      const [l] = live.splice(Math.floor(rnd() * live.length), 1);
      ops.push({ op: 'unmap', domain, iova: l!.iova, size: l!.pages * P });
      if (sync === 'invalidate') ops.push({ op: 'invalidate', domain });
      alloc.release(l!.iova, l!.pages);
      continue;
    }
    // A scatter-gather request: 1-8 segments mapped back to back, unmapped by one call.
    const segs = 1 + Math.floor(rnd() * 8);
    const sizes: bigint[] = [];
    for (let s = 0; s < segs; s++) sizes.push(BigInt(1 + Math.floor(rnd() * (rnd() < 0.8 ? 1 : 32))));
    const pages = sizes.reduce((a, b) => a + b, 0n);
    const base = alloc.alloc(pages);
    let at = base;
    for (const sz of sizes) {
      const gpa = BigInt(Math.floor(rnd() * Number(ramPages - sz))) * P;
      ops.push({ op: 'map', domain, iova: at, gpa, size: sz * P, perm: rnd() < 0.3 ? DMA_READ : DMA_RW });
      at += sz * P;
    }
    if (sync === 'invalidate') ops.push({ op: 'invalidate', domain });
    live.push({ iova: base, pages });
  }
}

/**
 * A guest that boots with its IOMMU off (all RAM mapped), builds its tables,
 * turns translation on, does DMA, turns it off and on again (a kexec, say).
 */
export function enableAfterBootTrace(opts: { ramBytes?: bigint; group?: number; ops?: number; seed?: number } = {}): DmaTrace {
  const ram = opts.ramBytes ?? 2n << 30n;
  const group = opts.group ?? 1;
  const rnd = prng(opts.seed ?? 2);
  const ops: GuestIommuOp[] = [{ op: 'attach', domain: group, group }];
  const alloc = new IovaAllocator();
  const live: Live[] = [];
  const n = opts.ops ?? 2000;
  dmaTraffic(rnd, ops, group, alloc, live, ram / P, Math.floor(n / 10), 'each-op');
  const phases = [{ at: ops.length, label: 'guest turns translation on' }];
  ops.push({ op: 'enable' });
  dmaTraffic(rnd, ops, group, alloc, live, ram / P, Math.floor(n / 2), 'each-op');
  phases.push({ at: ops.length, label: 'guest turns translation off (kexec)' });
  ops.push({ op: 'disable' });
  phases.push({ at: ops.length, label: 'the new kernel turns it on again' });
  ops.push({ op: 'enable' });
  dmaTraffic(rnd, ops, group, alloc, live, ram / P, n - ops.length > 0 ? n - ops.length : 1, 'each-op');
  return {
    memory: { regions: [{ name: 'ram-below-4g', gpa: 0n, size: ram, source: 'boot' }] },
    sync: 'each-op',
    devices: new Map(),
    ops,
    phases,
  };
}

/**
 * `devices` devices in one group (behind a PCIe-to-PCI bridge, say) sharing
 * one guest domain and so one container, each doing its own DMA, interleaved;
 * the guest invalidates after each request, as VT-d with caching mode asks.
 */
export function manyDevicesTrace(opts: { devices?: number; opsPerDevice?: number; ramBytes?: bigint; seed?: number; sync?: 'each-op' | 'invalidate' } = {}): DmaTrace {
  const nd = opts.devices ?? 8;
  const per = opts.opsPerDevice ?? 500;
  const ram = opts.ramBytes ?? 2n << 30n; // one region below the PCI hole, as q35 lays out 2 GiB
  const sync = opts.sync ?? 'invalidate';
  const rnd = prng(opts.seed ?? 3);
  const domain = 1;
  const ops: GuestIommuOp[] = [{ op: 'attach', domain, group: 1 }];
  const alloc = new IovaAllocator();
  const live: Live[][] = Array.from({ length: nd }, () => []);
  const devices = new Map<string, number>();
  for (let d = 0; d < nd; d++) devices.set(`0000:01:${d.toString(16).padStart(2, '0')}.0`, 1);
  for (let k = 0; k < per; k++)
    for (let d = 0; d < nd; d++) dmaTraffic(rnd, ops, domain, alloc, live[d]!, ram / P, 1, sync);
  return {
    memory: { regions: [{ name: 'ram-below-4g', gpa: 0n, size: ram, source: 'boot' }] },
    sync,
    devices,
    ops,
    phases: [],
  };
}
