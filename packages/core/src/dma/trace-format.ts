// vfiokit's own trace of guest IOMMU operations: a line-oriented text file
// that a person can read and diff, described in TRACE-FORMAT.md. Parsing and
// writing live here; importers from other formats produce a `DmaTrace`.
import { TraceError } from './errors';
import type { GuestIommu, GuestMemoryLayout, RamRegion } from './guest';
import { vtdIommu, virtioIommu } from './guest';
import { hex } from './layout';
import type { DomainType, GuestIommuOp } from './ops';
import type { SyncMode } from './shadow';
import { DMA_READ, DMA_WRITE } from './target';

export const TRACE_MAGIC = 'vfiokit-dma-trace 1';

/** A trace: optional facts about the guest, then operations in order. */
export interface DmaTrace {
  /** Guest RAM, when the trace says (`ram` lines). */
  readonly memory?: GuestMemoryLayout;
  /** The guest IOMMU, when the trace says (`iommu` line). */
  readonly iommu?: GuestIommu;
  /** When maps and unmaps take effect (`sync` line; `each-op` if absent). */
  readonly sync: SyncMode;
  /** Guest devices and their groups (`device` lines), for people and attribution. */
  readonly devices: ReadonlyMap<string, number>;
  readonly ops: readonly GuestIommuOp[];
  /** Seconds since guest boot of each op, when known (parallel to ops; NaN when unknown). */
  readonly times?: readonly number[];
  /** Labels (`# phase` lines) and the index of the op they precede. */
  readonly phases: readonly { readonly at: number; readonly label: string }[];
}

function permText(p: number): string {
  return `${p & DMA_READ ? 'r' : ''}${p & DMA_WRITE ? 'w' : ''}`;
}

function parsePerm(s: string, line: number): number {
  if (!/^(r|w|rw)$/.test(s)) throw new TraceError(`trace line ${line}: permission '${s}' must be r, w or rw`);
  return (s.includes('r') ? DMA_READ : 0) | (s.includes('w') ? DMA_WRITE : 0);
}

function num(s: string | undefined, line: number, what: string): bigint {
  if (s === undefined || !/^(0x[0-9a-fA-F]+|\d+)$/.test(s)) throw new TraceError(`trace line ${line}: ${what} '${s ?? ''}' is not a number`);
  return BigInt(s);
}

function small(s: string | undefined, line: number, what: string): number {
  const n = num(s, line, what);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new TraceError(`trace line ${line}: ${what} ${s} is too large`);
  return Number(n);
}

/** Write a trace in vfiokit's format. */
export function formatTrace(t: DmaTrace): string {
  const out = [TRACE_MAGIC, `sync ${t.sync}`];
  for (const r of t.memory?.regions ?? []) out.push(`ram ${r.name} ${hex(r.gpa)} ${hex(r.size)}${r.source === 'hotplug' ? ' hotplug' : ''}`);
  if (t.iommu && t.iommu.kind !== 'none') {
    if (t.iommu.kind === 'spapr-tce') throw new TraceError('sPAPR guests are traced as TCE hypercalls, not in this format');
    out.push(`iommu ${t.iommu.kind} aw=${t.iommu.addressWidth} pgsizes=${hex(t.iommu.pageSizes)} enabled=${t.iommu.enabled ? 1 : 0}`);
  }
  for (const [bdf, g] of t.devices) out.push(`device ${bdf} ${g}`);
  let phase = 0;
  t.ops.forEach((op, i) => {
    while (phase < t.phases.length && t.phases[phase]!.at === i) out.push(`# phase ${t.phases[phase++]!.label}`);
    const time = t.times && !Number.isNaN(t.times[i]) ? `@${t.times[i]!.toFixed(6)} ` : '';
    out.push(time + formatOp(op));
  });
  while (phase < t.phases.length) out.push(`# phase ${t.phases[phase++]!.label}`);
  return out.join('\n') + '\n';
}

export function formatOp(op: GuestIommuOp): string {
  switch (op.op) {
    case 'map':
      return `map ${op.domain} ${hex(op.iova)} ${hex(op.gpa)} ${hex(op.size)} ${permText(op.perm)}${op.unit !== undefined ? ` unit=${op.unit}` : ''}`;
    case 'unmap':
      return `unmap ${op.domain} ${hex(op.iova)} ${hex(op.size)}`;
    case 'invalidate':
      return `invalidate ${op.domain}`;
    case 'attach':
      return `attach ${op.domain} ${op.group}${op.domainType && op.domainType !== 'dma' ? ` ${op.domainType}` : ''}`;
    case 'detach':
      return `detach ${op.domain} ${op.group}`;
    default:
      return op.op;
  }
}

/** Read a trace in vfiokit's format; errors name the line. */
export function parseTrace(text: string): DmaTrace {
  const lines = text.split('\n');
  if (lines[0]?.trim() !== TRACE_MAGIC) throw new TraceError(`not a vfiokit DMA trace: the first line must be '${TRACE_MAGIC}'`);
  let sync: SyncMode = 'each-op';
  const regions: RamRegion[] = [];
  let iommu: GuestIommu | undefined;
  const devices = new Map<string, number>();
  const ops: GuestIommuOp[] = [];
  const times: number[] = [];
  const phases: { at: number; label: string }[] = [];
  lines.forEach((raw, i) => {
    const n = i + 1;
    if (i === 0) return;
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s*phase\s+(.*)$/.exec(line);
      if (m) phases.push({ at: ops.length, label: m[1]! });
      return;
    }
    let words = line.split(/\s+/);
    let time = NaN;
    if (words[0]!.startsWith('@')) {
      time = Number(words[0]!.slice(1));
      if (Number.isNaN(time)) throw new TraceError(`trace line ${n}: time '${words[0]}' is not a number of seconds`);
      words = words.slice(1);
    }
    const [kw, ...a] = words;
    const push = (op: GuestIommuOp) => {
      ops.push(op);
      times.push(time);
    };
    switch (kw) {
      case 'sync':
        if (a[0] !== 'each-op' && a[0] !== 'invalidate') throw new TraceError(`trace line ${n}: sync must be each-op or invalidate`);
        sync = a[0];
        break;
      case 'ram':
        regions.push({ name: a[0] ?? '', gpa: num(a[1], n, 'gpa'), size: num(a[2], n, 'size'), source: a[3] === 'hotplug' ? 'hotplug' : 'boot' });
        break;
      case 'iommu': {
        const kv = new Map(a.slice(1).map((w) => w.split('=') as [string, string]));
        const enabled = kv.get('enabled') === '1';
        const aw = kv.has('aw') ? small(kv.get('aw'), n, 'aw') : undefined;
        if (a[0] === 'vtd') iommu = { ...vtdIommu({ enabled, ...(aw === 39 || aw === 48 ? { addressWidth: aw } : {}) }) };
        else if (a[0] === 'virtio-iommu') iommu = virtioIommu({ enabled, ...(aw !== undefined ? { addressWidth: aw } : {}) });
        else throw new TraceError(`trace line ${n}: iommu kind '${a[0]}' must be vtd or virtio-iommu`);
        if (kv.has('pgsizes')) iommu = { ...iommu, pageSizes: num(kv.get('pgsizes'), n, 'pgsizes') };
        break;
      }
      case 'device':
        devices.set(a[0] ?? '', small(a[1], n, 'group'));
        break;
      case 'map': {
        const unit = a[5]?.startsWith('unit=') ? small(a[5].slice(5), n, 'unit') : undefined;
        push({
          op: 'map',
          domain: small(a[0], n, 'domain'),
          iova: num(a[1], n, 'iova'),
          gpa: num(a[2], n, 'gpa'),
          size: num(a[3], n, 'size'),
          perm: parsePerm(a[4] ?? '', n),
          ...(unit !== undefined ? { unit } : {}),
        });
        break;
      }
      case 'unmap':
        push({ op: 'unmap', domain: small(a[0], n, 'domain'), iova: num(a[1], n, 'iova'), size: num(a[2], n, 'size') });
        break;
      case 'invalidate':
        push({ op: 'invalidate', domain: small(a[0], n, 'domain') });
        break;
      case 'attach': {
        const type = (a[2] ?? 'dma') as DomainType;
        if (type !== 'dma' && type !== 'identity') throw new TraceError(`trace line ${n}: domain type '${a[2]}' must be dma or identity`);
        push({ op: 'attach', domain: small(a[0], n, 'domain'), group: small(a[1], n, 'group'), domainType: type });
        break;
      }
      case 'detach':
        push({ op: 'detach', domain: small(a[0], n, 'domain'), group: small(a[1], n, 'group') });
        break;
      case 'enable':
      case 'disable':
        push({ op: kw });
        break;
      default:
        throw new TraceError(`trace line ${n}: unknown keyword '${kw}'; see TRACE-FORMAT.md`);
    }
  });
  return {
    ...(regions.length > 0 ? { memory: { regions } } : {}),
    ...(iommu ? { iommu } : {}),
    sync,
    devices,
    ops,
    times,
    phases,
  };
}

/**
 * Read a trace in whichever form it comes: vfiokit's own format (by its
 * first line) or the Linux tracepoint text (`importLinuxTrace`, which may need
 * `device` to attribute run-time DMA).
 */
export function readTrace(text: string, opts: { readonly device?: string } = {}): DmaTrace {
  if (text.startsWith(TRACE_MAGIC)) return parseTrace(text);
  if (/^\s*\S.*-\d+\s+\[\d+\].*\d+\.\d+: (map|unmap|attach_device_to_domain|add_device_to_group):/m.test(text)) {
    // Loaded lazily: the importer depends on this module.
    const { importLinuxTrace } = require('./trace-linux') as typeof import('./trace-linux');
    return importLinuxTrace(text, opts).trace;
  }
  throw new TraceError(`not a trace vfiokit reads: expected '${TRACE_MAGIC}' on the first line, or Linux iommu tracepoint lines (/sys/kernel/tracing/trace)`);
}
