import test from 'ava';
import fc from 'fast-check';
import { GuestOpError, HostRefusalError } from './errors';
import { VfioError, VfioHost } from '../vfio/index';
import { spaprTargetOf } from './vfio-target';
import { SPAPR_DMA64_START, spaprTceIommu, type GuestMemoryLayout } from './guest';
import { planSpaprBridges, SpaprGuestDma, SpaprPeTranslator, spaprLiobn, type SpaprCall, type SpaprTarget } from './spapr';
import { HOST_RAM } from '../vfio/host-ram.test-support';

const MiB = 1n << 20n;
const layout: GuestMemoryLayout = { regions: [{ name: 'ram', gpa: 0n, size: 256n * MiB, source: 'boot', hva: HOST_RAM }] };

/** A v2 container that follows the kernel's rules and logs each call; a map past a window's end fails the test. */
class FakeTce implements SpaprTarget {
  readonly log: string[] = [];
  windows: { start: bigint; size: bigint; shift: number }[] = [{ start: 0n, size: 1n << 30n, shift: 12 }];
  maps = new Map<bigint, { vaddr: bigint; size: bigint }>();
  registered: { vaddr: bigint; size: bigint }[] = [];
  info() {
    return { dma32Start: 0n, dma32Size: 1n << 30n, ddw: { pageSizes: 0x11000n, maxWindows: 2 } };
  }
  createWindow(pageShift: number, size: bigint) {
    const start = this.windows.length === 0 ? 0n : SPAPR_DMA64_START;
    this.windows.push({ start, size, shift: pageShift });
    this.log.push(`create ${start.toString(16)}`);
    return { start };
  }
  removeWindow(start: bigint) {
    for (const k of this.maps.keys()) {
      const w = this.windows.find((x) => x.start === start)!;
      if (k >= w.start && k < w.start + w.size) this.maps.delete(k);
    }
    this.windows = this.windows.filter((w) => w.start !== start);
    this.log.push(`remove ${start.toString(16)}`);
  }
  register(vaddr: bigint, size: bigint) {
    this.registered.push({ vaddr, size });
    this.log.push('register');
  }
  unregister(vaddr: bigint, size: bigint) {
    if ([...this.maps.values()].some((m) => m.vaddr >= vaddr && m.vaddr < vaddr + size)) throw new Error('unregister while mapped leaks (6.12)');
    this.registered = this.registered.filter((r) => r.vaddr !== vaddr);
    this.log.push('unregister');
  }
  map(iova: bigint, vaddr: bigint, size: bigint) {
    const w = this.windows.find((x) => iova >= x.start && iova < x.start + x.size);
    if (!w || iova + size > w.start + w.size) throw new Error(`map ${iova.toString(16)}+${size.toString(16)} runs past a window end: oops`);
    for (let o = 0n; o < size; o += 1n << BigInt(w.shift)) {
      if (this.maps.has(iova + o)) throw new Error('EEXIST');
      this.maps.set(iova + o, { vaddr: vaddr + o, size: 1n << BigInt(w.shift) });
    }
    this.log.push(`map ${iova.toString(16)}+${size.toString(16)}`);
  }
  unmap(iova: bigint, size: bigint) {
    const w = this.windows.find((x) => iova >= x.start && iova < x.start + x.size)!;
    for (let o = 0n; o < size; o += 1n << BigInt(w.shift)) this.maps.delete(iova + o);
    this.log.push(`unmap ${iova.toString(16)}+${size.toString(16)}`);
  }
}

function setup() {
  const topo = planSpaprBridges([{ id: 5, reservedRegions: [] }]);
  const fake = new FakeTce();
  const tr = new SpaprPeTranslator(topo.bridges[0]!, fake, layout, spaprTceIommu().defaultWindow, 16);
  tr.start();
  fake.log.length = 0;
  return { tr, fake, phb: topo.bridges[0]! };
}

test('each PE becomes its own host bridge under the one pseries machine, with QEMU\'s LIOBNs', (t) => {
  const topo = planSpaprBridges([{ id: 9, reservedRegions: [] }, { id: 4, reservedRegions: [] }]);
  t.is(topo.parent, 'spapr-machine');
  t.deepEqual(topo.bridges.map((b) => [b.id, b.group, b.liobn32, b.liobn64]), [
    ['phb1', 4, 0x80000100, 0x80000101],
    ['phb2', 9, 0x80000200, 0x80000201],
  ]);
  t.is(spaprLiobn(1, 1), 0x80000101);
});

test('an indirect put of 512 TCEs contiguous in guest memory is one host map', (t) => {
  const { tr, fake, phb } = setup();
  const tces = Array.from({ length: 512 }, (_, i) => (0x100000n + BigInt(i) * 4096n) | 3n);
  tr.apply({ call: 'H_PUT_TCE_INDIRECT', liobn: phb.liobn32, ioba: 0x10000n, tces });
  t.deepEqual(fake.log, ['map 10000+200000']);
});

test('H_STUFF_TCE of one page into 4 entries maps that page at 4 bus addresses and counts 4 references', (t) => {
  const { tr, fake, phb } = setup();
  tr.apply({ call: 'H_STUFF_TCE', liobn: phb.liobn32, ioba: 0n, tce: 0x5000n | 3n, npages: 4 });
  t.deepEqual(fake.log, ['map 0+1000', 'map 1000+1000', 'map 2000+1000', 'map 3000+1000']);
  t.is(tr.referencesTo('ram'), 4);
});

test('clearing TCEs with H_STUFF_TCE of 0 unmaps them as one run', (t) => {
  const { tr, fake, phb } = setup();
  tr.apply({ call: 'H_PUT_TCE_INDIRECT', liobn: phb.liobn32, ioba: 0n, tces: [0x1003n, 0x2003n, 0x3003n] });
  fake.log.length = 0;
  tr.apply({ call: 'H_STUFF_TCE', liobn: phb.liobn32, ioba: 0n, tce: 0n, npages: 3 });
  t.deepEqual(fake.log, ['unmap 0+3000']);
  t.is(fake.maps.size, 0);
});

test('overwriting a valid TCE unmaps the old page before mapping the new one', (t) => {
  const { tr, fake, phb } = setup();
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn32, ioba: 0x1000n, tce: 0x1003n });
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn32, ioba: 0x1000n, tce: 0x2001n });
  t.deepEqual(fake.log, ['map 1000+1000', 'unmap 1000+1000', 'map 1000+1000']);
  t.is(fake.maps.get(0x1000n)!.vaddr, HOST_RAM + 0x2000n);
});

test('TCEs running past the end of the window are refused before any host call', (t) => {
  const { tr, fake, phb } = setup();
  const tces = [0x1003n, 0x2003n];
  t.throws(() => tr.apply({ call: 'H_PUT_TCE_INDIRECT', liobn: phb.liobn32, ioba: (1n << 30n) - 0x1000n, tces }), {
    instanceOf: GuestOpError,
    message: /run outside window 0/,
  });
  t.deepEqual(fake.log, []);
});

test('the guest\'s 64-bit window is created at QEMU\'s DMA64 start and maps with its own page size', (t) => {
  const { tr, fake, phb } = setup();
  tr.apply({ call: 'create-window', phb: phb.index, pageShift: 16, windowShift: 30 });
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn64, ioba: SPAPR_DMA64_START + 0x10000n, tce: 0x30000n | 3n });
  t.deepEqual(fake.log, ['create 800000000000000', 'map 800000000010000+10000']);
});

test('closing unmaps and removes windows before it unregisters memory', (t) => {
  const { tr, fake, phb } = setup();
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn32, ioba: 0n, tce: 0x1003n });
  fake.log.length = 0;
  tr.close();
  t.deepEqual(fake.log, ['unmap 0+1000', 'remove 0', 'unregister']);
});

test('a DIMM with TCEs into it cannot be unplugged', (t) => {
  const { tr, phb } = setup();
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn32, ioba: 0n, tce: 0x1003n });
  t.throws(() => tr.unplug('ram'), { instanceOf: GuestOpError, message: /1 TCE\(s\) of phb1 still map it/ });
});

test('a 64 KiB-TCE window over RAM backed by 4 KiB pages is refused before the host is asked', (t) => {
  const fake = new FakeTce();
  const phb = planSpaprBridges([{ id: 5, reservedRegions: [] }]).bridges[0]!;
  const tr = new SpaprPeTranslator(phb, fake, layout, spaprTceIommu().defaultWindow, 12);
  tr.start();
  fake.log.length = 0;
  t.throws(() => tr.apply({ call: 'create-window', phb: 1, pageShift: 16, windowShift: 30 }), { instanceOf: HostRefusalError, message: /4096-byte host pages/ });
  t.deepEqual(fake.log, []);
});

// The same calls on vfio-core's sPAPR mock (a QEMU pseries PE on 6.12) through napi.
function onMock() {
  const container = VfioHost.mock({ spapr: true }).openTceContainer(1);
  const phb = planSpaprBridges([{ id: 1, reservedRegions: [] }]).bridges[0]!;
  const tr = new SpaprPeTranslator(phb, spaprTargetOf(container), layout, spaprTceIommu().defaultWindow);
  tr.start();
  return { container, phb, tr };
}

test('on the sPAPR mock the guest default window replaces the host one and TCE puts land in it', (t) => {
  const { container, phb, tr } = onMock();
  tr.apply({ call: 'H_PUT_TCE_INDIRECT', liobn: phb.liobn32, ioba: 0x10000n, tces: [0x1003n, 0x2003n, 0x3003n] });
  t.deepEqual(container.windows(), [{ start: 0n, size: 1n << 30n, pageShift: 12 }]);
  // The mock holds the TCEs: a second map there is EEXIST.
  t.is(t.throws(() => container.map(0x11000n, HOST_RAM + 0x1000n, 0x1000n), { instanceOf: VfioError })?.code, 'EEXIST');
});

test('on the sPAPR mock the guest 64-bit window is created where QEMU puts it, mapped, and torn down in order', (t) => {
  const { container, phb, tr } = onMock();
  tr.apply({ call: 'create-window', phb: phb.index, pageShift: 12, windowShift: 30 });
  tr.apply({ call: 'H_PUT_TCE', liobn: phb.liobn64, ioba: SPAPR_DMA64_START + 0x10000n, tce: 0x30003n });
  t.deepEqual(container.windows().map((w) => w.start), [0n, SPAPR_DMA64_START]);
  tr.close();
  t.deepEqual(container.windows(), []);
});

test('a pseries guest with two PEs routes each hypercall by LIOBN to its own PE\'s container', (t) => {
  const a = new FakeTce();
  const b = new FakeTce();
  const dma = new SpaprGuestDma(
    [
      { group: { id: 3, reservedRegions: [] }, target: a },
      { group: { id: 8, reservedRegions: [] }, target: b },
    ],
    layout,
    spaprTceIommu().defaultWindow,
  );
  dma.start();
  a.log.length = 0;
  b.log.length = 0;
  dma.apply({ call: 'H_PUT_TCE', liobn: spaprLiobn(2, 0), ioba: 0x1000n, tce: 0x1003n });
  t.deepEqual([a.log, b.log], [[], ['map 1000+1000']]);
  t.throws(() => dma.apply({ call: 'H_PUT_TCE', liobn: spaprLiobn(3, 0), ioba: 0n, tce: 0x1003n }), { instanceOf: GuestOpError, message: /belongs to no guest host bridge/ });
});

// ---- property: on the sPAPR mock, the container's TCEs equal the guest's after every call

/** Records what reaches the container, page by page, and passes it on. */
function witness(inner: SpaprTarget) {
  const live = new Map<bigint, string>();
  const target: SpaprTarget = {
    ...inner,
    info: () => inner.info(),
    createWindow: (s, z) => inner.createWindow(s, z),
    removeWindow: (start) => {
      inner.removeWindow(start);
      for (const k of [...live.keys()]) if (k >= start && k < start + (1n << 40n)) live.delete(k);
    },
    register: (v, z) => inner.register(v, z),
    unregister: (v, z) => inner.unregister(v, z),
    map: (iova, vaddr, size, perm) => {
      inner.map(iova, vaddr, size, perm);
      for (let o = 0n; o < size; o += 4096n) live.set(iova + o, `${vaddr + o}/${perm}`);
    },
    unmap: (iova, size) => {
      inner.unmap(iova, size);
      for (let o = 0n; o < size; o += 4096n) live.delete(iova + o);
    },
  };
  return { target, live };
}

test('after every random TCE hypercall the sPAPR mock holds exactly the guest\'s valid TCEs, and nothing past a window end is ever sent', (t) => {
  const W = 1n << 30n;
  const call = fc.record({
    kind: fc.constantFrom('put', 'stuff', 'indirect'),
    back: fc.integer({ min: 1, max: 24 }),
    n: fc.integer({ min: 1, max: 8 }),
    page: fc.oneof(fc.nat(15), fc.constant(0x20000)), // 0x20000 pages = 512 MiB: not RAM
    perm: fc.integer({ min: 0, max: 3 }),
  });
  fc.assert(
    fc.property(fc.array(call, { maxLength: 40 }), (calls) => {
      const container = VfioHost.mock({ spapr: true }).openTceContainer(1);
      const { target, live } = witness(spaprTargetOf(container));
      const phb = planSpaprBridges([{ id: 1, reservedRegions: [] }]).bridges[0]!;
      const tr = new SpaprPeTranslator(phb, target, layout, spaprTceIommu().defaultWindow);
      tr.start();
      const guest = new Map<bigint, bigint>();
      for (const c of calls) {
        const ioba = W - BigInt(c.back) * 4096n;
        const tce = (BigInt(c.page) * 4096n) | BigInt(c.perm);
        const tces = c.kind === 'put' ? [tce] : c.kind === 'stuff' ? new Array<bigint>(c.n).fill(tce) : Array.from({ length: c.n }, (_, i) => tce + BigInt(i) * 4096n);
        const fits = ioba + BigInt(tces.length) * 4096n <= W;
        const isRam = tces.every((x) => (x & 3n) === 0n || (x & ~0xfffn) < 256n << 20n);
        const op: SpaprCall =
          c.kind === 'put'
            ? { call: 'H_PUT_TCE', liobn: phb.liobn32, ioba, tce }
            : c.kind === 'stuff'
              ? { call: 'H_STUFF_TCE', liobn: phb.liobn32, ioba, tce, npages: c.n }
              : { call: 'H_PUT_TCE_INDIRECT', liobn: phb.liobn32, ioba, tces };
        if (fits && isRam) {
          tr.apply(op);
          tces.forEach((x, i) => ((x & 3n) === 0n ? guest.delete(ioba + BigInt(i) * 4096n) : guest.set(ioba + BigInt(i) * 4096n, x)));
        } else if (!fits) {
          if (!throwsOf(() => tr.apply(op), GuestOpError)) return false;
        } else if (!throwsOf(() => tr.apply(op), HostRefusalError)) return false;
        const expected = new Map([...guest].map(([k, x]) => [k, `${HOST_RAM + (x & ~0xfffn)}/${x & 3n}`]));
        if (expected.size !== live.size || [...expected].some(([k, v]) => live.get(k) !== v)) return false;
      }
      tr.close();
      return live.size === 0;
    }),
    { numRuns: 150 },
  );
  t.pass();
});

function throwsOf(f: () => void, kind: new (...a: never[]) => Error): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof kind;
  }
}
