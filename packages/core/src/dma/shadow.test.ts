import test from 'ava';
import fc from 'fast-check';
import { EntryLimitError, GuestOpError, HostRefusalError } from './errors';
import { vtdIommu, type GuestMemoryLayout } from './guest';
import type { GuestIommuOp } from './ops';
import { ShadowTranslator, type SyncMode } from './shadow';
import { VTD_HOST, X86_MSI_WINDOW, type DmaTarget, type HostIommuInfo } from './target';
import { Type1Model } from './type1-model';
import { openMockDmaTarget } from './vfio-target';
import { HOST_RAM } from '../vfio/host-ram.test-support';
import { GuestReference, pageView, sameView, within, P } from './testing.test-support';

const layout: GuestMemoryLayout = {
  regions: [
    { name: 'low', gpa: 0n, size: 64n * P, source: 'boot', hva: HOST_RAM + 0x10000000n },
    { name: 'high', gpa: 0x100000n, size: 64n * P, source: 'boot', hva: HOST_RAM + 0x20000000n },
  ],
};
const group = { id: 7, reservedRegions: [X86_MSI_WINDOW] };

function setup(opts: { enabled?: boolean; sync?: SyncMode; host?: HostIommuInfo; spy?: (model: Type1Model) => void } = {}) {
  const host = opts.host ?? VTD_HOST;
  // vfio-core's mock through napi does the work; the model beside it records
  // what the container holds and any call the mock took that the kernel refuses.
  const model = new Type1Model(host, openMockDmaTarget(host, [group]));
  const target: DmaTarget = {
    mapBatch: (b) => {
      const n = model.mapBatch(b);
      opts.spy?.(model);
      return n;
    },
    unmapBatch: (b) => model.unmapBatch(b),
  };
  const tr = new ShadowTranslator({
    layout,
    iommu: vtdIommu({ enabled: opts.enabled ?? true }),
    host,
    groups: [{ group, target }],
    sync: opts.sync ?? 'each-op',
  });
  tr.start();
  return { tr, model };
}

const map = (iova: bigint, gpa: bigint, size: bigint, perm = 3, domain = 1): GuestIommuOp => ({ op: 'map', domain, iova, gpa, size, perm });
const unmap = (iova: bigint, size: bigint, domain = 1): GuestIommuOp => ({ op: 'unmap', domain, iova, size });
const attach: GuestIommuOp = { op: 'attach', domain: 1, group: 7 };

test('a guest map becomes one host map of the same IOVA at the host address of its GPA', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0xfffff000n, 0x2000n, P));
  t.deepEqual(model.mappings(), [{ iova: 0xfffff000n, size: P, vaddr: HOST_RAM + 0x10002000n, flags: 3 }]);
});

test('one guest unmap covering several guest maps is one host call', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  for (let i = 0n; i < 4n; i++) tr.apply(map(0x10000n + i * P, i * 2n * P, P));
  const before = tr.container(7).stats.calls;
  tr.apply(unmap(0x10000n, 4n * P));
  t.is(tr.container(7).stats.calls - before, 1);
  t.is(model.mappings().length, 0);
});

test('one guest unmap covering several host mappings contiguous in IOVA costs one ioctl', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  // Host pages two apart: four separate kernel mappings, back to back in IOVA.
  for (let i = 0n; i < 4n; i++) tr.apply(map(0x10000n + i * P, i * 2n * P, P));
  const before = tr.container(7).stats.ioctls;
  tr.apply(unmap(0x10000n, 4n * P));
  t.deepEqual([tr.container(7).stats.ioctls - before, model.mappings().length, model.disagreements], [1, 0, []]);
});

test('one guest unmap covering host mappings with unmapped holes between them costs one ioctl', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x11000n, 0x4000n, 2n * P));
  tr.apply(map(0x14000n, 0x8000n, P));
  const before = tr.container(7).stats.ioctls;
  tr.apply(unmap(0x10000n, 5n * P));
  t.deepEqual([tr.container(7).stats.ioctls - before, model.mappings().length, model.disagreements], [1, 0, []]);
});

test('a guest unmap joins its mappings across a hole into one ioctl and leaves the live mapping just past its end', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x12000n, 0x4000n, P));
  tr.apply(map(0x13000n, 0x8000n, P));
  const before = tr.container(7).stats.ioctls;
  tr.apply(unmap(0x10000n, 3n * P));
  t.deepEqual(
    [tr.container(7).stats.ioctls - before, model.mappings().map((m) => m.iova), model.disagreements],
    [1, [0x13000n], []],
  );
});

test('unmaps flushed together keep apart around a live mapping between them: two ioctls, and it stays', (t) => {
  const { tr, model } = setup({ sync: 'invalidate' });
  tr.apply(attach);
  for (let i = 0n; i < 3n; i++) tr.apply(map(0x10000n + i * P, i * 2n * P, P));
  tr.apply({ op: 'invalidate', domain: 1 });
  tr.apply(unmap(0x10000n, P));
  tr.apply(unmap(0x12000n, P));
  const before = tr.container(7).stats.ioctls;
  tr.apply({ op: 'invalidate', domain: 1 });
  t.deepEqual(
    [tr.container(7).stats.ioctls - before, model.mappings().map((m) => m.iova), model.disagreements],
    [2, [0x11000n], []],
  );
});

test('guest maps contiguous in IOVA and host memory stay separate host mappings', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x11000n, P, P));
  tr.apply(unmap(0x10000n, P));
  t.deepEqual(model.mappings().map((m) => m.iova), [0x11000n]);
});

test('a guest unmap of part of one of its maps unmaps the host entry and maps back the rest', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, 4n * P));
  tr.apply(unmap(0x11000n, P));
  t.deepEqual(
    model.mappings().map((m) => [m.iova, m.size, m.vaddr]),
    [
      [0x10000n, P, HOST_RAM + 0x10000000n],
      [0x12000n, 2n * P, HOST_RAM + 0x10002000n],
    ],
  );
});

test('the same guest page mapped at two IOVAs is two host mappings and holds a reference on its region twice', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0x5000n, P));
  tr.apply(map(0x20000n, 0x5000n, P));
  t.deepEqual(model.mappings().map((m) => m.vaddr), [HOST_RAM + 0x10005000n, HOST_RAM + 0x10005000n]);
  t.is(tr.referencesTo('low'), 2);
});

test('a map overlapping a live guest mapping is refused and changes nothing', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, 2n * P));
  t.throws(() => tr.apply(map(0x11000n, 0x8000n, P)), { instanceOf: GuestOpError });
  t.is(model.mappings().length, 1);
});

test('a map of a GPA that is not RAM is refused as peer-to-peer', (t) => {
  const { tr } = setup();
  tr.apply(attach);
  t.throws(() => tr.apply(map(0x10000n, 0x80000n, P)), { instanceOf: HostRefusalError, message: /not guest RAM/ });
});

test('a guest IOVA in the host MSI window is refused before anything is mapped', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  t.throws(() => tr.apply(map(0xfee00000n, 0n, P)), { instanceOf: HostRefusalError, message: /msi reserved region/ });
  t.is(model.mappings().length, 0);
});

test('maps past dma_entry_limit are refused with the limit named, before the kernel would say ENOSPC', (t) => {
  const { tr } = setup({ host: { ...VTD_HOST, dmaEntryLimit: 2 } });
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x20000n, 0n, P));
  t.throws(() => tr.apply(map(0x30000n, 0n, P)), { instanceOf: EntryLimitError, message: /dma_entry_limit of 2/ });
});

test('a guest with its IOMMU off gets all RAM; enabling drops it before mapping the tables', (t) => {
  const calls: string[] = [];
  const { tr, model } = setup({ enabled: false, spy: (m) => calls.push(`map with ${m.mappings().length} live`) });
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  t.deepEqual(model.mappings().map((m) => m.iova), [0n, 0x100000n]);
  tr.apply({ op: 'enable' });
  t.deepEqual(model.mappings().map((m) => m.iova), [0x10000n]);
  // Identity map at start, then the tables after the identity map is gone: only one entry live at that map.
  t.deepEqual(calls, ['map with 2 live', 'map with 1 live']);
});

test('disabling translation drops the tables and maps all RAM again', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply({ op: 'disable' });
  t.deepEqual(model.mappings().map((m) => m.iova), [0n, 0x100000n]);
});

test('disabling translation drops a table of scattered mappings with one unmap ioctl', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  for (let i = 0n; i < 5n; i++) tr.apply(map(0x10000n + i * 0x10000n, i * 2n * P, P));
  const before = tr.container(7).stats.ioctls;
  tr.apply({ op: 'disable' });
  // One unmap of the table, then the identity map of the two RAM regions.
  t.deepEqual([tr.container(7).stats.ioctls - before, model.unmapCalls, model.disagreements], [3, 1, []]);
});

test('a detached group with translation on reaches nothing', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply({ op: 'detach', domain: 1, group: 7 });
  t.is(model.mappings().length, 0);
});

test('with invalidate sync, maps reach the host at the invalidation, in one call', (t) => {
  const { tr, model } = setup({ sync: 'invalidate' });
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x20000n, 0x3000n, P));
  t.is(model.mappings().length, 0);
  const before = tr.container(7).stats.calls;
  tr.apply({ op: 'invalidate', domain: 1 });
  t.is(model.mappings().length, 2);
  t.is(tr.container(7).stats.calls - before, 1);
});

test('maps hinted as one unit are merged, and a mispredicted partial unmap still leaves exactly the guest mapping', (t) => {
  const { tr, model } = setup({ sync: 'invalidate' });
  tr.apply(attach);
  tr.apply({ ...map(0x10000n, 0n, P), unit: 5 } as GuestIommuOp);
  tr.apply({ ...map(0x11000n, P, P), unit: 5 } as GuestIommuOp);
  tr.apply({ op: 'invalidate', domain: 1 });
  t.is(model.mappings().length, 1);
  tr.apply(unmap(0x10000n, P));
  tr.apply({ op: 'invalidate', domain: 1 });
  t.deepEqual(model.mappings().map((m) => [m.iova, m.size]), [[0x11000n, P]]);
});

test('a DIMM with live guest mappings into it cannot be unplugged', (t) => {
  const { tr } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0x100000n, P));
  t.throws(() => tr.unplug('high'), { instanceOf: GuestOpError, message: /1 guest IOMMU mapping/ });
});

// ---- property: after every op the container equals the guest's grant -------

const pages = (n: number) => BigInt(n) * P;
const opArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('map' as const), iova: fc.nat(40), gpa: fc.oneof(fc.nat(63), fc.integer({ min: 256, max: 319 })), n: fc.integer({ min: 1, max: 4 }), perm: fc.integer({ min: 1, max: 3 }), unit: fc.option(fc.nat(3), { nil: undefined }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('unmap' as const), iova: fc.nat(40), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('enable' as const, 'disable' as const, 'invalidate' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('attach' as const, 'detach' as const), domain: fc.integer({ min: 1, max: 2 }) }) },
);

for (const sync of ['each-op', 'invalidate'] as const) {
  test(`after every operation of a random trace (${sync} sync) the container equals the guest's grant and no map exceeds it`, (t) => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(opArb, { maxLength: 60 }), (startEnabled, raw) => {
        const ref = new GuestReference(layout, startEnabled);
        let effective = new GuestReference(layout, startEnabled);
        let grantNow = ref.grant(7);
        let grantBefore = grantNow;
        const { tr, model } = setup({
          enabled: startEnabled,
          sync,
          // Every map call: the container after it holds nothing outside the new grant.
          spy: (m) => {
            if (!within(pageView(m.mappings()), grantNow) && !within(pageView(m.mappings()), grantBefore))
              throw new Error('a map went beyond what the guest granted');
          },
        });
        const snapshot = () => {
          const e = new GuestReference(layout, ref.enabled);
          for (const [d, m] of ref.domains) e.domains.set(d, new Map(m));
          for (const [g, d] of ref.attached) e.attached.set(g, d);
          return e;
        };
        for (const r of raw) {
          let op: GuestIommuOp;
          let ok = true;
          switch (r.op) {
            case 'map':
              op = { op: 'map', domain: ref.attached.get(7) ?? 1, iova: 0x40000n + pages(r.iova), gpa: pages(r.gpa), size: pages(r.n), perm: r.perm, ...(r.unit !== undefined ? { unit: r.unit } : {}) };
              ok = ref.map(op.domain, op.iova, op.gpa, op.size, op.perm);
              break;
            case 'unmap':
              op = { op: 'unmap', domain: ref.attached.get(7) ?? 1, iova: 0x40000n + pages(r.iova), size: pages(r.n) };
              ref.unmap(op.domain, op.iova, op.size);
              break;
            case 'attach':
              op = { op: 'attach', domain: r.domain, group: 7 };
              ref.attached.set(7, r.domain);
              break;
            case 'detach':
              op = { op: 'detach', domain: ref.attached.get(7) ?? r.domain, group: 7 };
              ok = ref.attached.has(7);
              ref.attached.delete(7);
              break;
            case 'enable':
            case 'disable':
              op = { op: r.op };
              ref.enabled = r.op === 'enable';
              break;
            default:
              op = { op: 'invalidate', domain: ref.attached.get(7) ?? 1 };
          }
          const flushes = sync === 'each-op' || op.op !== 'map' && op.op !== 'unmap';
          grantBefore = effective.grant(7);
          if (flushes) effective = snapshot();
          grantNow = effective.grant(7);
          if (ok) tr.apply(op);
          else t.throws(() => tr.apply(op));
          if (!sameView(pageView(model.mappings()), grantNow)) return false;
        }
        return model.disagreements.length === 0;
      }),
      { numRuns: 200 },
    );
    t.pass();
  });
}

test('two assigned groups in one guest domain each get the domain\'s maps in their own container', (t) => {
  const host = VTD_HOST;
  const g8 = { id: 8, reservedRegions: [X86_MSI_WINDOW] };
  const m7 = new Type1Model(host, openMockDmaTarget(host, [group]));
  const m8 = new Type1Model(host, openMockDmaTarget(host, [g8]));
  const tr = new ShadowTranslator({ layout, iommu: vtdIommu({ enabled: true }), host, groups: [{ group, target: m7 }, { group: g8, target: m8 }], sync: 'each-op' });
  tr.start();
  tr.apply({ op: 'attach', domain: 1, group: 7 });
  tr.apply({ op: 'attach', domain: 1, group: 8 });
  tr.apply(map(0x10000n, 0x2000n, P));
  t.deepEqual([m7.mappings().map((m) => m.iova), m8.mappings().map((m) => m.iova)], [[0x10000n], [0x10000n]]);
});

test('moving a group to another domain swaps its container to that domain\'s tables, old entries out first', (t) => {
  const { tr, model } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0n, P));
  tr.apply(map(0x20000n, 0x1000n, P, 3, 2));
  tr.apply({ op: 'attach', domain: 2, group: 7 });
  t.deepEqual(model.mappings().map((m) => m.iova), [0x20000n]);
});

test('a group attached to an identity domain reaches all RAM while translation is on', (t) => {
  const { tr, model } = setup();
  tr.apply({ op: 'attach', domain: 3, group: 7, domainType: 'identity' });
  t.deepEqual(model.mappings().map((m) => [m.iova, m.size]), [[0n, 64n * P], [0x100000n, 64n * P]]);
});

test('a guest map crossing from one RAM region into a hole is refused', (t) => {
  const { tr } = setup();
  tr.apply(attach);
  t.throws(() => tr.apply(map(0x10000n, 63n * P, 2n * P)), { instanceOf: HostRefusalError });
});

test('a DIMM plugged while translation is off is mapped at once, and again when translation goes off later', (t) => {
  const { tr, model } = setup({ enabled: false });
  tr.apply(attach);
  tr.plug({ name: 'dimm0', gpa: 0x200000n, size: 16n * P, source: 'hotplug', hva: HOST_RAM + 0x30000000n });
  t.deepEqual(model.mappings().map((m) => m.iova), [0n, 0x100000n, 0x200000n]);
  tr.apply({ op: 'enable' });
  tr.apply(map(0x10000n, 0x200000n, P));
  t.deepEqual(model.mappings().map((m) => [m.iova, m.vaddr]), [[0x10000n, HOST_RAM + 0x30000000n]]);
  tr.apply(unmap(0x10000n, P));
  tr.apply({ op: 'disable' });
  t.deepEqual(model.mappings().map((m) => m.iova), [0n, 0x100000n, 0x200000n]);
});

test('an unplugged DIMM leaves the identity map with one unmap', (t) => {
  const { tr, model } = setup({ enabled: false });
  tr.plug({ name: 'dimm0', gpa: 0x200000n, size: 16n * P, source: 'hotplug', hva: HOST_RAM + 0x30000000n });
  const before = tr.container(7).stats.calls;
  tr.unplug('dimm0');
  t.deepEqual([model.mappings().map((m) => m.iova), tr.container(7).stats.calls - before], [[0n, 0x100000n], 1]);
});

test('a page mapped at two IOVAs is charged twice against memlock but pins one page', (t) => {
  const { tr } = setup();
  tr.apply(attach);
  tr.apply(map(0x10000n, 0x5000n, 2n * P));
  tr.apply(map(0x20000n, 0x6000n, P));
  t.deepEqual(tr.container(7).pinnedBytes(), { charged: 3n * P, distinct: 2n * P });
});
