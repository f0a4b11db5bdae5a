// Import the Linux kernel's own iommu tracepoints, as /sys/kernel/tracing/trace
// prints them (drivers/iommu/iommu.c, include/trace/events/iommu.h):
//
//   map:   "IOMMU: iova=0x%016llx - 0x%016llx paddr=0x%016llx size=%zu"   once per iommu_map()
//   unmap: "IOMMU: iova=0x%016llx - 0x%016llx size=%zu unmapped_size=%zu" once per iommu_unmap()
//   add_device_to_group: "IOMMU: groupID=%d device=%s"
//   attach_device_to_domain / detach_device_from_domain: "IOMMU: device=%s"
//
// Neither map nor unmap names a domain or a device, so ops are attributed by
// the rules in TRACE-FORMAT.md ("Importing Linux tracepoints").
import { TraceError } from './errors';
import { hex } from './layout';
import type { GuestIommuOp } from './ops';
import type { DmaTrace } from './trace-format';
import { DMA_RW } from './target';
import { pfn } from './intervals';
import { IntervalTree } from './interval-tree';

/** One event line of the tracing buffer. */
export interface TraceEvent {
  readonly task: string;
  readonly pid: number;
  readonly cpu: number;
  /** Seconds, as the trace clock printed them. */
  readonly time: number;
  readonly event: string;
  readonly body: string;
  /** 1-based line number in the input. */
  readonly line: number;
}

// "            init-1       [001] .....     1.337319: add_device_to_group: IOMMU: ..."
// The flags column (irqs-off, need-resched...) is absent in some trace options; the
// task name may hold spaces and dashes, so the pid is the last "-digits" before the CPU.
const EVENT_LINE = /^\s*(.*)-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(\d+)\]\s+(?:\S{4,6}\s+)?(\d+\.\d+):\s+(\w+):\s?(.*)$/;

/**
 * The event lines of one or more tracing buffers (a whole `trace` file, or
 * `per_cpu/cpuN/trace` files concatenated), merged by timestamp. The sort is
 * stable: events with equal timestamps keep their order in the input, which
 * is the kernel's order within one CPU.
 */
export function parseTraceEvents(text: string): TraceEvent[] {
  const out: TraceEvent[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('#') || l.trim() === '') continue;
    const m = EVENT_LINE.exec(l.replace(/\r$/, ''));
    if (!m) continue;
    out.push({ task: m[1]!.trim(), pid: Number(m[2]), cpu: Number(m[3]), time: Number(m[4]), event: m[5]!, body: m[6]!, line: i + 1 });
  }
  return out.map((e, i) => [e, i] as const).sort((a, b) => a[0].time - b[0].time || a[1] - b[1]).map(([e]) => e);
}

export interface LinuxImportOptions {
  /**
   * The device whose DMA the run-time maps and unmaps belong to (`0000:00:02.0`):
   * the tracepoints do not say, so a trace of a guest with several devices in
   * translated domains needs it. Not needed when only one group is attached.
   */
  readonly device?: string;
}

/** What the importer saw besides operations. */
export interface LinuxImportReport {
  readonly events: number;
  readonly maps: number;
  readonly unmaps: number;
  /** Events of other kinds that were skipped (io_page_fault...), by name. */
  readonly skipped: ReadonlyMap<string, number>;
  /**
   * Unmaps whose `unmapped_size` differs from what the imported tables held
   * there, and maps over pages the imported tables still held.
   */
  readonly mismatches: readonly string[];
  /** The domain each run-time map and unmap was attributed to. */
  readonly dmaDomain: number | undefined;
}

const MAP_BODY = /^IOMMU: iova=(0x[0-9a-f]+) - (0x[0-9a-f]+) paddr=(0x[0-9a-f]+) size=(\d+)$/;
const UNMAP_BODY = /^IOMMU: iova=(0x[0-9a-f]+) - (0x[0-9a-f]+) size=(\d+) unmapped_size=(\d+)$/;
const GROUP_BODY = /^IOMMU: groupID=(\d+) device=(\S+)$/;
const DEVICE_BODY = /^IOMMU: device=(\S+)$/;

/** A device of the recording that a `#` comment line names, if exactly one is. */
function headerDevice(text: string, devices: ReadonlyMap<string, number>): string | undefined {
  const named = new Set<string>();
  for (const line of text.split('\n', 200)) {
    if (!line.startsWith('#')) continue;
    for (const m of line.matchAll(/\bdevice ([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\b/g)) if (devices.has(m[1]!)) named.add(m[1]!);
  }
  return named.size === 1 ? [...named][0] : undefined;
}

/**
 * Turn a Linux iommu tracepoint recording into guest IOMMU operations.
 * Each group's default domain gets the group's number as its domain id. The
 * recording's maps carry no permissions: every map is imported read-write
 * (the tracepoint drops `prot`), which grants no less than the guest did.
 */
export function importLinuxTrace(text: string, opts: LinuxImportOptions = {}): { trace: DmaTrace; report: LinuxImportReport } {
  const events = parseTraceEvents(text);
  const devices = new Map<string, number>();
  const ops: GuestIommuOp[] = [];
  const times: number[] = [];
  const phases: { at: number; label: string }[] = [];
  const attachedGroups = new Set<number>();
  const tables = new Map<number, IntervalTree>();
  const skipped = new Map<string, number>();
  const mismatches: string[] = [];
  let maps = 0;
  let unmaps = 0;
  let enabled = false;
  let dmaDomain: number | undefined;
  /** The index of the first event after the current run of map events. */
  let mapRunEnd = 0;

  const push = (op: GuestIommuOp, t: number) => {
    ops.push(op);
    times.push(t);
  };
  const groupOf = (bdf: string, e: TraceEvent): number => {
    const g = devices.get(bdf);
    if (g === undefined) throw new TraceError(`line ${e.line}: device ${bdf} is attached before any add_device_to_group names its group`);
    return g;
  };
  const tableOf = (d: number) => {
    let t = tables.get(d);
    if (!t) tables.set(d, (t = new IntervalTree()));
    return t;
  };
  /** The domain of run-time DMA, decided at the first run-time map or unmap. */
  const runtimeDomain = (e: TraceEvent): number => {
    if (dmaDomain !== undefined) return dmaDomain;
    if (opts.device !== undefined) {
      const g = devices.get(opts.device);
      if (g === undefined)
        throw new TraceError(`device ${opts.device} never appears in an add_device_to_group line; devices seen: ${[...devices.keys()].join(', ')}`);
      return (dmaDomain = g);
    }
    if (attachedGroups.size === 1) return (dmaDomain = [...attachedGroups][0]!);
    // The recording's own comments may say whose DMA it is (vfiokit's recorder
    // writes "device 0000:00:02.0" in its header); otherwise every candidate
    // is named rather than one picked at random.
    const named = headerDevice(text, devices);
    const which = named !== undefined ? `--device ${named} (the device the recording's header names)` : `--device BDF, one of ${[...devices.keys()].join(', ') || 'the devices the guest had'}`;
    throw new TraceError(
      `line ${e.line}: ${e.event} does not say which device it is for and ${attachedGroups.size} groups are attached (${[...attachedGroups].join(', ')}); ` +
        `name the device doing DMA: ${which}`,
    );
  };

  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    switch (e.event) {
      case 'add_device_to_group': {
        const m = GROUP_BODY.exec(e.body);
        if (!m) throw new TraceError(`line ${e.line}: cannot read add_device_to_group '${e.body}'`);
        devices.set(m[2]!, Number(m[1]));
        break;
      }
      case 'remove_device_from_group':
        break;
      case 'attach_device_to_domain': {
        const m = DEVICE_BODY.exec(e.body);
        if (!m) throw new TraceError(`line ${e.line}: cannot read attach_device_to_domain '${e.body}'`);
        const g = groupOf(m[1]!, e);
        // One attach per group: a group's devices share its domain.
        if (!attachedGroups.has(g)) {
          attachedGroups.add(g);
          push({ op: 'attach', domain: g, group: g, domainType: 'dma' }, e.time);
        }
        break;
      }
      case 'detach_device_from_domain': {
        const m = DEVICE_BODY.exec(e.body);
        if (!m) throw new TraceError(`line ${e.line}: cannot read detach_device_from_domain '${e.body}'`);
        const g = groupOf(m[1]!, e);
        if (attachedGroups.delete(g)) push({ op: 'detach', domain: g, group: g }, e.time);
        break;
      }
      case 'map': {
        const m = MAP_BODY.exec(e.body);
        if (!m) throw new TraceError(`line ${e.line}: cannot read map '${e.body}'`);
        const iova = BigInt(m[1]!);
        const size = BigInt(m[4]!);
        if (BigInt(m[2]!) !== iova + size) throw new TraceError(`line ${e.line}: map end ${m[2]} is not iova + size`);
        // A map right before a group's attach is that group's direct mapping
        // (iommu_create_device_direct_mappings runs before __iommu_attach_device
        // in the probe); any other map is run-time DMA.
        // The run of maps this one belongs to ends at the same event for
        // every map in it: found once per run, not once per map, so a run of
        // k maps costs k steps, not k^2/2 (the growth bench's 'all maps'
        // trace showed the square).
        if (i >= mapRunEnd) {
          mapRunEnd = i + 1;
          while (mapRunEnd < events.length && events[mapRunEnd]!.event === 'map') mapRunEnd++;
        }
        const next = events[mapRunEnd];
        const nextDev = next?.event === 'attach_device_to_domain' ? DEVICE_BODY.exec(next.body)?.[1] : undefined;
        const domain = nextDev !== undefined && !enabled ? groupOf(nextDev, next!) : runtimeDomain(e);
        const [s, en] = [pfn(iova), pfn(iova + size)];
        const t = tableOf(domain);
        // The kernel traces a map only once it succeeded (iommu_map_nosync in
        // drivers/iommu/iommu.c), so its domain held nothing there: pages the
        // import still holds are left over from an unmap attributed to
        // another domain. The new map replaces them, and the report says so.
        if (t.intersects(s, en)) {
          let held = 0n;
          for (const [a, b] of t.removeOverlapping(s, en)) {
            held += BigInt(Math.min(b, en) - Math.max(a, s)) * 4096n;
            if (a < s) t.insert(a, s);
            if (b > en) t.insert(en, b);
          }
          mismatches.push(`line ${e.line}: map of ${hex(iova)}+${hex(size)} in domain ${domain} is over ${held} bytes the imported tables still held there`);
        }
        // A map of size 0 holds no page (the kernel traces it all the same).
        if (s < en) t.insert(s, en);
        push({ op: 'map', domain, iova, gpa: BigInt(m[3]!), size, perm: DMA_RW }, e.time);
        maps++;
        break;
      }
      case 'unmap': {
        const m = UNMAP_BODY.exec(e.body);
        if (!m) throw new TraceError(`line ${e.line}: cannot read unmap '${e.body}'`);
        const iova = BigInt(m[1]!);
        const size = BigInt(m[3]!);
        const unmapped = BigInt(m[4]!);
        // The domain that holds a mapping there; else the run-time DMA domain.
        let domain: number | undefined;
        for (const [d, t] of tables) if (t.intersects(pfn(iova), pfn(iova + size))) domain ??= d;
        domain ??= runtimeDomain(e);
        const t = tableOf(domain);
        const [s, en] = [pfn(iova), pfn(iova + size)];
        const removed = t.removeOverlapping(s, en);
        let held = 0n;
        for (const [a, b] of removed) held += BigInt(Math.min(b, en) - Math.max(a, s)) * 4096n;
        if (held !== unmapped)
          mismatches.push(`line ${e.line}: unmap of ${hex(iova)}+${hex(size)} reports ${unmapped} bytes unmapped; the imported tables held ${held}`);
        // Keep the import's tables in step (remainders of split maps stay).
        for (const [a, b] of removed) {
          if (a < s) t.insert(a, s);
          if (b > en) t.insert(en, b);
        }
        push({ op: 'unmap', domain, iova, size }, e.time);
        unmaps++;
        break;
      }
      case 'tracing_mark_write':
        phases.push({ at: ops.length, label: e.body.trim() });
        break;
      default:
        skipped.set(e.event, (skipped.get(e.event) ?? 0) + 1);
    }
    // intel_iommu_init turns translation on (iommu_enable_translation) after
    // iommu_device_register has probed and attached every device: the
    // tracepoints do not show it, so it is placed after the boot-time block
    // of add/attach/direct-map events.
    if (!enabled && attachedGroups.size > 0) {
      const next = events[i + 1];
      const probe = next && (next.event === 'add_device_to_group' || next.event === 'attach_device_to_domain' || (next.event === 'map' && directMapAhead(events, i + 1)));
      if (!probe) {
        push({ op: 'enable' }, e.time);
        enabled = true;
      }
    }
  }
  return {
    trace: { sync: 'each-op', devices, ops, times, phases },
    report: { events: events.length, maps, unmaps, skipped, mismatches, dmaDomain },
  };
}

/** Whether the maps starting at events[i] are followed by an attach (a probe-time direct mapping). */
function directMapAhead(events: readonly TraceEvent[], i: number): boolean {
  let j = i;
  while (j < events.length && events[j]!.event === 'map') j++;
  return events[j]?.event === 'attach_device_to_domain';
}

/** Guest RAM size from a recording's `-m N` in a "qemu command line" comment, if there is one. */
export function qemuMemoryFromHeader(text: string): bigint | undefined {
  const line = text.split('\n').find((l) => l.startsWith('#') && /qemu command line:/.test(l));
  const m = line && /\s-m\s+(\d+)([MG]?)\b/.exec(line);
  if (!m) return undefined;
  const unit = m[2] === 'G' ? 1n << 30n : 1n << 20n; // QEMU reads a bare -m number as MiB
  return BigInt(m[1]!) * unit;
}
