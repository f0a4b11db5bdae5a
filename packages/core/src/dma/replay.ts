// Drive the shadow policy from a trace, against any DmaTarget (vfio-core's
// mock, the kernel in the lab), and count what it cost.
import type { GuestIommuCaps, GuestMemoryLayout } from './guest';
import { IntervalMap, pfn } from './intervals';
import type { GuestIommuOp } from './ops';
import { ShadowTranslator, type ShadowGroup } from './shadow';
import type { DmaTrace } from './trace-format';
import type { HostIommuInfo } from './target';

export interface ReplayOptions {
  readonly trace: DmaTrace;
  /** Guest RAM with host addresses (the trace's own `ram` lines, placed, or the VMM's). */
  readonly layout: GuestMemoryLayout;
  /** The guest IOMMU; `enabled` is its state when the trace starts. */
  readonly iommu: GuestIommuCaps & { readonly enabled: boolean };
  readonly host: HostIommuInfo;
  /** Assigned groups; operations on other groups' domains change only the guest's tables. */
  readonly groups: readonly ShadowGroup[];
  /** Called before each operation (a checker learns the new grant here). */
  readonly beforeOp?: (index: number, op: GuestIommuOp) => void;
  /** Called after each operation (property tests compare containers here). */
  readonly afterOp?: (index: number, op: GuestIommuOp, translator: ShadowTranslator) => void;
}

export interface ReplayResult {
  readonly ops: number;
  /** Batched calls to targets and the ioctls they reported, over all containers. */
  readonly calls: number;
  readonly ioctls: number;
  /** Highest live entry count seen in any one container. */
  readonly peakEntries: number;
  readonly seconds: number;
  readonly translator: ShadowTranslator;
}

export function replayTrace(o: ReplayOptions): ReplayResult {
  const tr = new ShadowTranslator({ layout: o.layout, iommu: o.iommu, host: o.host, groups: o.groups, sync: o.trace.sync });
  const t0 = process.hrtime.bigint();
  tr.start();
  const ops = o.trace.ops;
  for (let i = 0; i < ops.length; i++) {
    o.beforeOp?.(i, ops[i]!);
    tr.apply(ops[i]!);
    o.afterOp?.(i, ops[i]!, tr);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let calls = 0;
  let ioctls = 0;
  let peakEntries = 0;
  for (const g of o.groups) {
    const s = tr.container(g.group.id).stats;
    calls += s.calls;
    ioctls += s.ioctls;
    peakEntries = Math.max(peakEntries, s.peakEntries);
  }
  return { ops: ops.length, calls, ioctls, peakEntries, seconds, translator: tr };
}

/**
 * Mark maps that one later unmap removes whole, together, with a shared
 * `unit`: the translator may then let the target merge them, which is safe
 * because they leave together. Only a replayer can know this; a live guest
 * does not say. A map removed piecemeal, or never, keeps no hint.
 */
export function annotateUnits(ops: readonly GuestIommuOp[]): GuestIommuOp[] {
  const out = [...ops];
  const tables = new Map<number, IntervalMap<number>>();
  const unitOf = new Map<number, number>();
  ops.forEach((op, i) => {
    if (op.op !== 'map' && op.op !== 'unmap') return;
    let t = tables.get(op.domain);
    if (!t) tables.set(op.domain, (t = new IntervalMap()));
    const s = pfn(op.iova);
    const e = s + pfn(op.size);
    if (op.op === 'map') {
      if (!t.intersects(s, e)) t.insert(s, e, i);
      return;
    }
    const [a, b] = t.overlapping(s, e);
    const whole: number[] = [];
    let allWhole = true;
    for (let k = a; k < b; k++) {
      if (t.startAt(k) >= s && t.endAt(k) <= e) whole.push(t.valueAt(k));
      else allWhole = false;
    }
    if (allWhole && whole.length > 1) for (const m of whole) unitOf.set(m, i);
    t.removeAt(a, b);
  });
  for (const [m, unit] of unitOf) out[m] = { ...(out[m] as Extract<GuestIommuOp, { op: 'map' }>), unit };
  return out;
}

/**
 * The same trace moved into a smaller world: only `domain`'s operations (and
 * the enable/disable ones), renumbered to `group`; IOVAs moved by `iovaDelta`;
 * guest physical addresses folded into [0, ramBytes) page by page (pages that
 * fold onto each other become shared pages, which the policy must handle
 * anyway). The shape (sizes, order, overlaps in time) is kept: this is how the
 * lab replays a 2 GiB guest's recording through a device with a 28-bit DMA mask.
 */
export function relocateTrace(trace: DmaTrace, o: { domain: number; group: number; iovaDelta: bigint; ramBytes: bigint }): DmaTrace {
  const ops: GuestIommuOp[] = [];
  const fold = (gpa: bigint) => gpa % o.ramBytes;
  for (const op of trace.ops) {
    if (op.op === 'enable' || op.op === 'disable') ops.push(op);
    else if ((op.op === 'attach' || op.op === 'detach') && op.domain === o.domain) ops.push({ ...op, domain: o.group, group: o.group });
    else if (op.op === 'unmap' && op.domain === o.domain) ops.push({ ...op, domain: o.group, iova: op.iova + o.iovaDelta });
    else if (op.op === 'invalidate' && op.domain === o.domain) ops.push({ ...op, domain: o.group });
    else if (op.op === 'map' && op.domain === o.domain) {
      // A map whose folded range would wrap past the end is split at it.
      let done = 0n;
      while (done < op.size) {
        const gpa = fold(op.gpa + done);
        const n = op.size - done < o.ramBytes - gpa ? op.size - done : o.ramBytes - gpa;
        ops.push({ ...op, domain: o.group, iova: op.iova + done + o.iovaDelta, gpa, size: n });
        done += n;
      }
    }
  }
  return { sync: trace.sync, devices: new Map(), ops, phases: [] };
}
