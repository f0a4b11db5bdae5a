import test from 'ava';
import { enableAfterBootTrace, fragmentedLayout, manyDevicesTrace } from './generate';
import { InvalidLayoutError } from './errors';
import { vtdIommu } from './guest';
import { placeRam, validateLayout } from './layout';
import { replayTrace } from './replay';
import { VTD_HOST, X86_MSI_WINDOW } from './target';
import type { DmaTrace } from './trace-format';
import { formatTrace, readTrace } from './trace-format';
import { Type1Model } from './type1-model';
import { openMockDmaTarget } from './vfio-target';
import { applyToReference, GuestReference, pageView, sameView } from './testing.test-support';
import { HOST_RAM } from '../vfio/host-ram.test-support';

const group = { id: 1, reservedRegions: [X86_MSI_WINDOW] };

/** Replay with one assigned group, comparing the container with the guest after every invalidation (each op for each-op traces). */
function replayChecked(trace: DmaTrace, enabled: boolean): { ok: boolean; ops: number; calls: number } {
  const layout = placeRam(trace.memory!, HOST_RAM);
  const model = new Type1Model(VTD_HOST, openMockDmaTarget(VTD_HOST, [group]));
  const ref = new GuestReference(layout, enabled);
  let ok = true;
  const r = replayTrace({
    trace,
    layout,
    iommu: vtdIommu({ enabled }),
    host: VTD_HOST,
    groups: [{ group, target: model }],
    beforeOp: (_i, op) => void applyToReference(ref, op),
    afterOp: (_i, op) => {
      const synced = trace.sync === 'each-op' || op.op !== 'map' && op.op !== 'unmap';
      if (synced && !sameView(pageView(model.mappings()), ref.grant(1))) ok = false;
    },
  });
  return { ok: ok && model.disagreements.length === 0, ops: r.ops, calls: r.calls };
}

test('a fragmented 1 TiB layout has the asked size and fragments and is a valid layout', (t) => {
  const l = fragmentedLayout({ total: 1n << 40n, fragments: 4096, seed: 7 });
  t.is(l.regions.length, 4096);
  t.is(l.regions.reduce((a, r) => a + r.size, 0n), 1n << 40n);
  t.notThrows(() => validateLayout(l));
});

// Calls, not ioctls: turning translation on maps every entry of the guest's
// tables at once, one ioctl each unless contiguous, in one batched call.
test('a guest that enables its IOMMU after boot replays with the container equal to its grant throughout, in no more calls than ops', (t) => {
  const r = replayChecked(enableAfterBootTrace({ ramBytes: 64n << 20n, ops: 400, seed: 5 }), false);
  t.deepEqual([r.ok, r.calls <= r.ops], [true, true], `${r.calls} calls for ${r.ops} ops`);
});

test('eight devices sharing one container replay with the container equal to their domain at every invalidation', (t) => {
  const r = replayChecked(manyDevicesTrace({ devices: 8, opsPerDevice: 20, ramBytes: 64n << 20n, seed: 9 }), true);
  t.deepEqual([r.ok, r.calls <= r.ops], [true, true], `${r.calls} calls for ${r.ops} ops`);
});

test('generated traces never use the x86 MSI window, as Linux guests reserve it', (t) => {
  const tr = manyDevicesTrace({ devices: 4, opsPerDevice: 2000, ramBytes: 64n << 20n, seed: 1 });
  t.false(tr.ops.some((o) => o.op === 'map' && o.iova < 0xfef00000n && o.iova + o.size > 0xfee00000n));
});

test('readTrace tells vfiokit traces from Linux tracepoint text', (t) => {
  const tr = enableAfterBootTrace({ ramBytes: 64n << 20n, ops: 50 });
  t.is(formatTrace(readTrace(formatTrace(tr))), formatTrace(tr));
  const linux = '  ip-1  [000] .....  1.000000: add_device_to_group: IOMMU: groupID=2 device=0000:00:02.0\n';
  t.deepEqual([...readTrace(linux).devices], [['0000:00:02.0', 2]]);
});

test('a fragmented layout with more fragments than 2 MiB units is refused at once, naming the limit', (t) => {
  const err = t.throws(() => fragmentedLayout({ total: 64n << 30n, fragments: 40000 }), { instanceOf: InvalidLayoutError });
  t.is(err.message, '65536 MiB holds at most 32768 fragments of 2 MiB, not 40000: ask for at most 32768 fragments or more memory');
});

test('a fragmented layout may use every 2 MiB unit as its own fragment', (t) => {
  const l = fragmentedLayout({ total: 64n << 30n, fragments: 32768, seed: 3 });
  t.is(l.regions.length, 32768);
  t.true(l.regions.every((r) => r.size === 2n << 20n));
  t.notThrows(() => validateLayout(l));
});

test('a fragmented layout of nearly every unit is a valid layout of the asked size', (t) => {
  const l = fragmentedLayout({ total: 64n << 30n, fragments: 30000, seed: 4 });
  t.is(l.regions.length, 30000);
  t.is(l.regions.reduce((a, r) => a + r.size, 0n), 64n << 30n);
  t.notThrows(() => validateLayout(l));
});

test('a fragmented layout whose total is not a multiple of 2 MiB is refused', (t) => {
  t.throws(() => fragmentedLayout({ total: (64n << 30n) + 4096n, fragments: 2 }), { instanceOf: InvalidLayoutError, message: /is not a positive multiple of 2 MiB/ });
  t.throws(() => fragmentedLayout({ total: 1n << 20n, fragments: 1 }), { instanceOf: InvalidLayoutError, message: /is not a positive multiple of 2 MiB/ });
});

test('a fragmented layout that could end past 2^64 is refused', (t) => {
  t.throws(() => fragmentedLayout({ total: (1n << 64n) - (4n << 30n), fragments: 4 }), { instanceOf: InvalidLayoutError, message: /past the 64-bit guest physical address space/ });
});
