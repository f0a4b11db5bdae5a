import test from 'ava';
import fc from 'fast-check';
import * as fs from 'node:fs';
import { TraceError } from './errors';
import { vtdIommu } from './guest';
import { placeRam, q35Layout } from './layout';
import type { GuestIommuOp } from './ops';
import { annotateUnits, replayTrace } from './replay';
import { VTD_HOST, X86_MSI_WINDOW } from './target';
import { formatTrace, parseTrace, type DmaTrace } from './trace-format';
import { importLinuxTrace, parseTraceEvents, qemuMemoryFromHeader } from './trace-linux';
import { Type1Model } from './type1-model';
import { openMockDmaTarget } from './vfio-target';
import {
  applyToReference,
  fixturePath,
  FULL_RECORDING,
  GuestReference,
  pageView,
  sameView,
  within,
} from './testing.test-support';
import { HOST_RAM } from '../vfio/host-ram.test-support';

const excerpt = fs.readFileSync(fixturePath('e1000e-strict-6.1-phase1.txt'), 'utf8');
const E1000E = '0000:00:02.0';

test('the excerpt imports as 259 maps and 257 unmaps with no unmapped_size disagreement', (t) => {
  const { report } = importLinuxTrace(excerpt, { device: E1000E });
  t.deepEqual([report.maps, report.unmaps, report.mismatches.length], [259, 257, 0]);
});

test('the LPC group direct map made before its attach is attributed to group 3, run-time DMA to the e1000e group', (t) => {
  const { trace } = importLinuxTrace(excerpt, { device: E1000E });
  const maps = trace.ops.filter((o): o is Extract<GuestIommuOp, { op: 'map' }> => o.op === 'map');
  t.deepEqual([maps[0]!.domain, maps[0]!.iova, maps[0]!.size], [3, 0n, 16n << 20n]);
  t.true(maps.slice(1).every((m) => m.domain === 2));
});

test('translation is turned on after the boot-time probe, before the first run-time map', (t) => {
  const { trace } = importLinuxTrace(excerpt, { device: E1000E });
  const kinds = trace.ops.map((o) => o.op);
  t.deepEqual(kinds.slice(0, 6), ['attach', 'attach', 'attach', 'map', 'attach', 'enable']);
});

test('workload markers become phases', (t) => {
  const { trace } = importLinuxTrace(excerpt, { device: E1000E });
  t.deepEqual(
    trace.phases.map((p) => p.label),
    ['PHASE load e1000e module', 'PHASE 1 ip link set eth0 up', 'PHASE 1 ip link set eth0 down'],
  );
});

test('run-time maps with several attached groups and no device named are refused, naming the groups', (t) => {
  t.throws(() => importLinuxTrace(excerpt), { instanceOf: TraceError, message: /4 groups are attached \(0, 1, 2, 3\)/ });
});

test('events of per-CPU buffers concatenated out of order are merged by timestamp', (t) => {
  const cpu1 = '  ip-1  [001] .....     2.000000: map: IOMMU: iova=0x0000000000002000 - 0x0000000000003000 paddr=0x0000000000002000 size=4096';
  const cpu0 = '  ip-2  [000] .....     1.000000: map: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000001000 size=4096';
  t.deepEqual(parseTraceEvents(`${cpu1}\n${cpu0}\n`).map((e) => e.cpu), [0, 1]);
});

test('the recording header gives the guest RAM size from QEMU\'s -m', (t) => {
  t.is(qemuMemoryFromHeader(excerpt), 2048n << 20n);
});

/** Replay with group 2 (e1000e) assigned, checking the container against an independent guest reference. */
function replayAndCheck(text: string) {
  const { trace } = importLinuxTrace(text, { device: E1000E });
  const layout = placeRam(q35Layout(qemuMemoryFromHeader(text)!), HOST_RAM);
  const e1000eGroup = { id: 2, reservedRegions: [X86_MSI_WINDOW] };
  const model = new Type1Model(VTD_HOST, openMockDmaTarget(VTD_HOST, [e1000eGroup]));
  const ref = new GuestReference(layout, false);
  let grant = ref.grant(2);
  let beyond = -1;
  let unequal = -1;
  let at = 0;
  const target = {
    mapBatch: (b: Parameters<Type1Model['mapBatch']>[0]) => {
      const n = model.mapBatch(b);
      if (beyond < 0 && !within(pageView(model.mappings()), grant)) beyond = at;
      return n;
    },
    unmapBatch: (b: Parameters<Type1Model['unmapBatch']>[0]) => model.unmapBatch(b),
  };
  const r = replayTrace({
    trace,
    layout,
    iommu: vtdIommu({ enabled: false }),
    host: VTD_HOST,
    groups: [{ group: e1000eGroup, target }],
    beforeOp: (i, op) => {
      at = i;
      applyToReference(ref, op);
      grant = ref.grant(2);
    },
    afterOp: (i) => {
      if (unequal < 0 && !sameView(pageView(model.mappings()), grant)) unequal = i;
    },
  });
  return { r, beyond, unequal, disagreements: model.disagreements };
}

test('replaying the excerpt keeps the e1000e container equal to its guest domain after every op, with at most one call per op', (t) => {
  const { r, beyond, unequal, disagreements } = replayAndCheck(excerpt);
  t.deepEqual([beyond, unequal, disagreements], [-1, -1, []]);
  t.true(r.ioctls <= r.ops);
});

test('replaying the full real recording keeps the container equal to the guest after every op, with at most one call per op', (t) => {
  const file = fixturePath(FULL_RECORDING);
  const { r, beyond, unequal, disagreements } = replayAndCheck(fs.readFileSync(file, 'utf8'));
  t.deepEqual([beyond, unequal, disagreements], [-1, -1, []]);
  t.true(r.ioctls <= r.ops);
});

test('a trace survives writing and reading back unchanged', (t) => {
  const { trace } = importLinuxTrace(excerpt, { device: E1000E });
  const again = parseTrace(formatTrace(trace));
  t.deepEqual(again.ops, trace.ops);
  t.deepEqual(again.phases, trace.phases);
});

test('random operations survive writing and reading back', (t) => {
  const big = fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }).map((n) => n * 4096n);
  const op: fc.Arbitrary<GuestIommuOp> = fc.oneof(
    fc.record({ op: fc.constant('map' as const), domain: fc.nat(100), iova: big, gpa: big, size: big, perm: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ op: fc.constant('unmap' as const), domain: fc.nat(100), iova: big, size: big }),
    fc.record({ op: fc.constant('invalidate' as const), domain: fc.nat(100) }),
    fc.record({ op: fc.constant('attach' as const), domain: fc.nat(100), group: fc.nat(100), domainType: fc.constantFrom('dma' as const, 'identity' as const) }),
    fc.record({ op: fc.constantFrom('enable' as const, 'disable' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op), (ops) => {
      const tr: DmaTrace = { sync: 'invalidate', devices: new Map(), ops, phases: [] };
      const back = parseTrace(formatTrace(tr)).ops.map((o) => (o.op === 'attach' && o.domainType === 'dma' ? { ...o } : o));
      return JSON.stringify(back, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) ===
        JSON.stringify(ops.map((o) => (o.op === 'attach' ? { ...o, domainType: o.domainType ?? 'dma' } : o)), (_, v) => (typeof v === 'bigint' ? v.toString() : v));
    }),
  );
  t.pass();
});

test('a trace line with an unknown keyword is refused naming the line', (t) => {
  t.throws(() => parseTrace('vfiokit-dma-trace 1\nmap 1 0x1000 0x1000 0x1000 rw\nfrob 1\n'), { instanceOf: TraceError, message: /line 3: unknown keyword 'frob'/ });
});

test('maps one unmap removes together share a unit hint; a map unmapped alone gets none', (t) => {
  const ops: GuestIommuOp[] = [
    { op: 'map', domain: 1, iova: 0x1000n, gpa: 0n, size: 0x1000n, perm: 3 },
    { op: 'map', domain: 1, iova: 0x2000n, gpa: 0x1000n, size: 0x1000n, perm: 3 },
    { op: 'map', domain: 1, iova: 0x3000n, gpa: 0x2000n, size: 0x1000n, perm: 3 },
    { op: 'unmap', domain: 1, iova: 0x1000n, size: 0x2000n },
    { op: 'unmap', domain: 1, iova: 0x3000n, size: 0x1000n },
  ];
  t.deepEqual(annotateUnits(ops).slice(0, 3).map((o) => (o.op === 'map' ? o.unit : null)), [3, 3, undefined]);
});

test('event lines without the flags column, with a tgid column, or with dashes in the task name are read', (t) => {
  const lines = [
    '          <idle>-0     [001]     3.000000: map: IOMMU: iova=0x0000000000003000 - 0x0000000000004000 paddr=0x0000000000003000 size=4096',
    '     kworker/u4:1-57    (   57) [000] .....     2.000000: map: IOMMU: iova=0x0000000000002000 - 0x0000000000003000 paddr=0x0000000000002000 size=4096',
    '    irq/24-ahci-99      [000] d.h1.     1.000000: map: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000001000 size=4096',
  ].join('\n');
  t.deepEqual(
    parseTraceEvents(lines).map((e) => [e.task, e.pid, e.cpu]),
    [
      ['irq/24-ahci', 99, 0],
      ['kworker/u4:1', 57, 0],
      ['<idle>', 0, 1],
    ],
  );
});

test('a map over pages the import still holds, left by an unmap attributed to another domain, replaces them and is reported', (t) => {
  // The LPC group's direct map covers IOVA 0..16 MiB in domain 3, so the
  // run-time unmap at 0x1000 is attributed to domain 3 and domain 2 keeps its
  // page: the kernel traced the second map, so that page was free there.
  const line = (time: string, event: string, body: string) => `  ip-1  [000] .....     ${time}: ${event}: IOMMU: ${body}`;
  const text = [
    line('1.000000', 'add_device_to_group', 'groupID=3 device=0000:00:1f.0'),
    line('1.000001', 'add_device_to_group', `groupID=2 device=${E1000E}`),
    line('1.000002', 'map', 'iova=0x0000000000000000 - 0x0000000001000000 paddr=0x0000000000000000 size=16777216'),
    line('1.000003', 'attach_device_to_domain', 'device=0000:00:1f.0'),
    line('1.000004', 'attach_device_to_domain', `device=${E1000E}`),
    line('2.000000', 'map', 'iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000005000 size=4096'),
    line('2.000001', 'unmap', 'iova=0x0000000000001000 - 0x0000000000002000 size=4096 unmapped_size=4096'),
    line('2.000002', 'map', 'iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000006000 size=4096'),
    line('2.000003', 'unmap', 'iova=0x0000000000001000 - 0x0000000000002000 size=4096 unmapped_size=4096'),
  ].join('\n');
  const { trace, report } = importLinuxTrace(text, { device: E1000E });
  t.deepEqual(
    trace.ops.filter((o) => o.op === 'map' || o.op === 'unmap').map((o) => `${o.op} ${o.domain}`),
    ['map 3', 'map 2', 'unmap 3', 'map 2', 'unmap 2'],
  );
  t.deepEqual(report.mismatches, ['line 8: map of 0x1000+0x1000 in domain 2 is over 4096 bytes the imported tables still held there']);
});
