// `pnpm bench` for the DMA policy: each measurement against the naive
// one-call-per-leaf translator, side by side in one run, on vfio-core's mock.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fragmentedLayout, manyDevicesTrace, enableAfterBootTrace } from '../generate';
import { vtdIommu, type GuestMemoryLayout } from '../guest';
import { checkIdentityRegions, identityEntry } from '../identity';
import { q35Layout } from '../layout';
import { reserveGuestRam } from '../sparse-ram';
import { ContainerMappings } from '../mappings';
import { replayTrace } from '../replay';
import { VTD_HOST, X86_MSI_WINDOW, type HostIommuInfo } from '../target';
import type { DmaTrace } from '../trace-format';
import { importLinuxTrace, qemuMemoryFromHeader } from '../trace-linux';
import { MOCK_TARGET_KIND, openMockDmaTarget } from '../vfio-target';
import { NaiveTranslator } from './naive';

const group = { id: 1, reservedRegions: [X86_MSI_WINDOW] };
/** A host whose IOVA space reaches 2^48, so a 1 TiB fragmented layout fits (AMD-Vi, VT-d with 48-bit SAGAW). */
const WIDE_HOST: HostIommuInfo = {
  ...VTD_HOST,
  iovaRanges: [VTD_HOST.iovaRanges[0]!, { start: 0xfef00000n, size: (1n << 48n) - 0xfef00000n }],
};

/** This process's CPU time, ms: on a shared machine wall time also counts waiting for a core. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * A row of the closing summary: printed here, and appended to the file
 * `pnpm bench` (scripts/bench.mjs) names in VFIOKIT_BENCH_ROWS, which prints
 * every package's rows in one table at the end.
 */
const summary: { name: string; value: string; target: string; ok: boolean }[] = [];
function summaryRow(name: string, value: string, target: string, ok: boolean): void {
  summary.push({ name, value, target, ok });
  const file = process.env.VFIOKIT_BENCH_ROWS;
  if (file) fs.appendFileSync(file, JSON.stringify({ bench: 'core', name, value, target, ok }) + '\n');
}

function ratio(a: number, b: number): string {
  return b === 0 ? 'n/a' : `${(a / b).toFixed(1)}x`;
}

function row(label: string, ...cols: (string | number)[]): void {
  console.log(`  ${label.padEnd(34)}${cols.map((c) => String(c).padStart(16)).join('')}`);
}

function identityBench(): void {
  // Maps pin what they map, on the mock as on the kernel: the RAM is a
  // sparse reservation of this process's address space, freed at the end.
  const { layout, memory } = reserveGuestRam(fragmentedLayout({ total: 1n << 40n, fragments: 4096, seed: 1 }));
  console.log(`\n1. identity map of a fragmented 1 TiB layout (${layout.regions.length} RAM regions) on the mock`);
  // Batched: plan (checks + entries), then issue, on fresh containers; naive:
  // one call per region. CPU time (wall time on a shared machine counts the
  // wait for a core), best of 15 alternating runs after 5 warm-ups: the
  // first runs are the JIT's, not the policy's.
  let container!: ContainerMappings;
  let naive!: NaiveTranslator;
  let planMs = Infinity;
  let issueMs = Infinity;
  let naiveMs = Infinity;
  for (let i = 0; i < 20; i++) {
    const c = new ContainerMappings('bench container', openMockDmaTarget(WIDE_HOST, [group]), WIDE_HOST.dmaEntryLimit);
    let t0 = cpuMs();
    checkIdentityRegions(layout.regions, WIDE_HOST, [group]);
    const entries = layout.regions.map((r) => identityEntry(r, 0));
    const p = cpuMs() - t0;
    t0 = cpuMs();
    c.map(entries);
    const is = cpuMs() - t0;
    const n = new NaiveTranslator(openMockDmaTarget(WIDE_HOST, [group]), layout, group.id, false);
    t0 = cpuMs();
    n.mapRam();
    const nm = cpuMs() - t0;
    container = c;
    naive = n;
    if (i < 5) continue;
    planMs = Math.min(planMs, p);
    issueMs = Math.min(issueMs, is);
    naiveMs = Math.min(naiveMs, nm);
  }
  row('', 'batched', 'naive', 'naive/batched');
  row('napi calls issued', container.stats.calls, naive.calls, ratio(naive.calls, container.stats.calls));
  row('ioctls issued', container.stats.ioctls, naive.ioctls, ratio(naive.ioctls, container.stats.ioctls));
  row('plan CPU time (ms)', planMs.toFixed(2), '-', '');
  row('issue CPU time (ms)', issueMs.toFixed(2), naiveMs.toFixed(2), ratio(naiveMs, issueMs));
  row('plan + issue CPU time (ms)', (planMs + issueMs).toFixed(2), naiveMs.toFixed(2), ratio(naiveMs, planMs + issueMs));
  summaryRow('1 TiB identity layout: plan', `${planMs.toFixed(2)} ms cpu`, '< 5 ms', planMs < 5);
  // No target for issuing: a map pins what it maps, and the mock checks that
  // every page of the 1 TiB is mapped (mincore), as the kernel's pin would
  // touch each one; that cost is the model of pinning, set beside the kernel's
  // own in `pnpm lab bench` (c), not the policy's.
  memory.free();
}

/**
 * Best of `runs` timings of a and of b, seconds, run alternately after one
 * warm-up each, so both see the same load: this machine is shared, and the
 * fastest run is the one least disturbed.
 */
function bestOf(runs: number, a: () => void, b: () => void): [number, number] {
  a();
  b();
  let ta = Infinity;
  let tb = Infinity;
  for (let i = 0; i < runs; i++) {
    let t0 = process.hrtime.bigint();
    a();
    ta = Math.min(ta, Number(process.hrtime.bigint() - t0) / 1e9);
    t0 = process.hrtime.bigint();
    b();
    tb = Math.min(tb, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return [ta, tb];
}

function replayBoth(name: string, trace: DmaTrace, layout: GuestMemoryLayout, enabled: boolean, host: HostIommuInfo, groupId: number) {
  const g = { ...group, id: groupId };
  const ours = () => replayTrace({ trace, layout, iommu: vtdIommu({ enabled }), host, groups: [{ group: g, target: openMockDmaTarget(host, [g]) }] });
  const theirs = () => {
    const naive = new NaiveTranslator(openMockDmaTarget(host, [g]), layout, groupId, enabled);
    if (!enabled) naive.mapRam();
    for (const op of trace.ops) naive.apply(op);
    return naive;
  };
  const r = ours();
  const naive = theirs();
  const [oursS, naiveS] = bestOf(7, ours, theirs);
  return { name, r, naive, oursS, naiveS };
}

function shadowBench(): void {
  console.log('\n2. shadow replay throughput (generated traces) on the mock');
  row('', 'batched', 'naive', 'batched/naive');
  const { layout: layout2g, memory } = reserveGuestRam(q35Layout(2n << 30n));
  const cases = [
    replayBoth('8 devices in one container', manyDevicesTrace({ devices: 8, opsPerDevice: 1000, sync: 'invalidate' }), layout2g, true, VTD_HOST, 1),
    replayBoth('IOMMU enabled after boot', enableAfterBootTrace({ ops: 20000 }), layout2g, false, VTD_HOST, 1),
  ];
  for (const c of cases) {
    const ops = c.r.ops;
    row(`${c.name}: guest ops/s`, Math.round(ops / c.oursS), Math.round(ops / c.naiveS), ratio(ops / c.oursS, ops / c.naiveS));
    row(`  ioctls per guest op (${ops} ops)`, (c.r.ioctls / ops).toFixed(3), (c.naive.ioctls / ops).toFixed(3), ratio(c.naive.ioctls, c.r.ioctls) + ' fewer');
    summaryRow(`shadow replay, ${c.name}: ioctls per guest op`, `${(c.r.ioctls / ops).toFixed(3)} (naive ${(c.naive.ioctls / ops).toFixed(3)})`, '<= 1', c.r.ioctls <= ops);
  }
  ioctlsByOp(enableAfterBootTrace({ ops: 20000 }), layout2g);
  memory.free();
}

/**
 * Where the enable-after-boot trace's ioctls go, by guest op kind: each guest
 * map or unmap should cost at most one (two only for an unmap that splits one
 * of the guest's own maps); enabling translation maps the whole table, one
 * ioctl per range that cannot merge with its neighbour, which no policy avoids.
 */
function ioctlsByOp(trace: DmaTrace, layout: GuestMemoryLayout): void {
  const inner = openMockDmaTarget(VTD_HOST, [group]);
  const byKind = new Map<string, { ops: number; ioctls: number; most: number }>();
  let pending = 0;
  const count = (n: number) => {
    pending += n;
    return n;
  };
  replayTrace({
    trace,
    layout,
    iommu: vtdIommu({ enabled: false }),
    host: VTD_HOST,
    groups: [{ group, target: { mapBatch: (b) => count(inner.mapBatch(b)), unmapBatch: (b) => count(inner.unmapBatch(b)) } }],
    beforeOp: () => void (pending = 0),
    afterOp: (_i, op) => {
      const k = byKind.get(op.op) ?? { ops: 0, ioctls: 0, most: 0 };
      byKind.set(op.op, { ops: k.ops + 1, ioctls: k.ioctls + pending, most: Math.max(k.most, pending) });
    },
  });
  console.log('  IOMMU enabled after boot, ioctls by guest op kind (batched policy):');
  row('    kind', 'guest ops', 'ioctls', 'most for one op');
  for (const [kind, k] of byKind) row(`    ${kind}`, k.ops, k.ioctls, k.most);
}

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'pnpm-workspace.yaml'))) {
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

function recordingBench(): void {
  const file = path.join(repoRoot(), 'packages', 'core', 'src', 'dma', 'fixtures', 'guest-iommu-e1000e-strict-6.1.txt');
  const text = fs.readFileSync(file, 'utf8');
  const { trace } = importLinuxTrace(text, { device: '0000:00:02.0' });
  const { layout, memory } = reserveGuestRam(q35Layout(qemuMemoryFromHeader(text) ?? 2n << 30n));
  console.log(`\n3. the real recording (${path.basename(file)}), e1000e's group assigned`);
  const c = replayBoth('recording', trace, layout, false, VTD_HOST, 2);
  const guestOps = trace.ops.filter((o) => o.op === 'map' || o.op === 'unmap').length;
  row('', 'batched', 'naive', 'naive/batched');
  row(`ioctls per guest map/unmap (${guestOps})`, (c.r.ioctls / guestOps).toFixed(3), (c.naive.ioctls / guestOps).toFixed(3), ratio(c.naive.ioctls, c.r.ioctls));
  row('napi calls', c.r.calls, c.naive.calls, ratio(c.naive.calls, c.r.calls));
  row('peak container entries', c.r.peakEntries, c.naive.peakEntries, ratio(c.naive.peakEntries, c.r.peakEntries));
  row('guest ops/s', Math.round(c.r.ops / c.oursS), Math.round(c.r.ops / c.naiveS), ratio(c.r.ops / c.oursS, c.r.ops / c.naiveS));
  console.log(`  goal "never more host calls than guest operations": ${c.r.ioctls <= c.r.ops ? 'met' : 'NOT met'} (${c.r.ioctls} ioctls for ${c.r.ops} guest ops, counting attach/enable)`);
  summaryRow('real recording: ioctls per guest op', `${c.r.ioctls}/${c.r.ops} = ${(c.r.ioctls / c.r.ops).toFixed(3)}`, '<= 1', c.r.ioctls <= c.r.ops);
  memory.free();
}

console.log('vfiokit DMA policy benchmark: batched policy vs a naive one-call-per-4-KiB-leaf translator (QEMU VT-d style), same run');
console.log(`target: ${MOCK_TARGET_KIND}; times are the best of 7 alternating runs after a warm-up`);
identityBench();
shadowBench();
recordingBench();
console.log('\nsummary');
for (const r of summary) console.log(`  ${r.ok ? 'ok  ' : 'MISS'} ${r.name.padEnd(52)} ${r.value.padStart(26)}   ${r.target}`);
