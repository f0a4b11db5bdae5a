import test from 'ava';
import fc from 'fast-check';
import { DmaFlags, HostMemory, IommuType, PciRegion, VfioError, VfioHost, type Device, type TceContainer, type Type1Container } from './index';

// vfio-core's mock must answer every call through napi with a value or a
// VfioError, never panic (a Rust panic crossing napi aborts the process,
// which would end this worker): random call sequences with random
// arguments, on an x86 and a pseries mock host.

type Obj = { c?: Type1Container; t?: TceContainer; d?: Device };

const big = fc.oneof(
  fc.bigInt({ min: 0n, max: 63n }).map((p) => p * 0x1000n),
  fc.constantFrom(0n, 0x800n, 1n << 30n, 0x3fff_f000n, 1n << 59n, (1n << 64n) - 0x1000n, (1n << 64n) - 1n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const small = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 0xffff_ffff }));

const call = fc.oneof(
  fc.record({ op: fc.constant('openType1'), group: fc.integer({ min: 0, max: 3 }), v1: fc.boolean() }),
  fc.record({ op: fc.constant('openTce'), group: fc.integer({ min: 0, max: 3 }), v2: fc.boolean() }),
  fc.record({ op: fc.constant('map'), iova: big, va: big, inBuf: fc.boolean(), size: big, flags: small }),
  fc.record({ op: fc.constant('unmap'), iova: big, size: big }),
  fc.record({ op: fc.constant('unmapAll') }),
  fc.record({ op: fc.constant('batch'), n: fc.integer({ min: 0, max: 5 }), iova: big, size: big, inBuf: fc.boolean() }),
  fc.record({ op: fc.constant('dirty'), iova: big, size: big, page: big }),
  fc.record({ op: fc.constant('vaddr'), iova: big, size: big, va: big }),
  fc.record({ op: fc.constant('device'), name: fc.constantFrom('0000:00:03.0', '0000:00:04.0', 'x') }),
  fc.record({ op: fc.constant('region'), index: small, offset: small, length: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ op: fc.constant('config'), offset: small, value: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ op: fc.constant('mmio'), offset: small, length: small, at: small }),
  fc.record({ op: fc.constant('irq'), index: small, start: small, count: small }),
  fc.record({ op: fc.constant('reset') }),
  fc.record({ op: fc.constant('tceWindow'), shift: small, size: big }),
  fc.record({ op: fc.constant('tceRemove'), start: big }),
  fc.record({ op: fc.constant('register'), va: big, inBuf: fc.boolean(), size: big }),
  fc.record({ op: fc.constant('unregister'), va: big, inBuf: fc.boolean(), size: big }),
  fc.record({ op: fc.constant('tceMap'), iova: big, va: big, inBuf: fc.boolean(), size: big }),
  fc.record({ op: fc.constant('tceUnmap'), iova: big, size: big }),
  fc.record({ op: fc.constant('close') }),
);

const buf = new HostMemory(64 * 4096);

function run(host: VfioHost, o: Obj, c: { op: string } & Record<string, unknown>): void {
  const va = (v: bigint, inBuf: boolean) => (inBuf ? buf.address + (v % (64n * 4096n)) : v);
  const n = (k: string) => c[k] as number;
  const b = (k: string) => c[k] as bigint;
  switch (c.op) {
    case 'openType1':
      o.c?.close();
      o.c = host.openType1([n('group')], c.v1 ? IommuType.Type1 : IommuType.Type1v2);
      return;
    case 'openTce':
      o.t?.release();
      o.t = host.openTceContainer(n('group'), c.v2 as boolean);
      return;
    case 'map':
      return o.c?.mapDma(b('iova'), va(b('va'), c.inBuf as boolean), b('size'), n('flags'));
    case 'unmap':
      o.c?.unmapDma(b('iova'), b('size'));
      return;
    case 'unmapAll':
      o.c?.unmapAll();
      return;
    case 'batch': {
      const e = new BigUint64Array(3 * n('n'));
      for (let i = 0; i < n('n'); i++) {
        e[3 * i] = (b('iova') + BigInt(i) * b('size')) & ((1n << 64n) - 1n);
        e[3 * i + 1] = va(BigInt(i) * 0x1000n, c.inBuf as boolean);
        e[3 * i + 2] = b('size');
      }
      o.c?.mapBatch(e, DmaFlags.ReadWrite);
      return;
    }
    case 'dirty':
      o.c?.startDirtyTracking();
      o.c?.dirtyBitmap(b('iova'), b('size'), b('page') || 1n);
      return;
    case 'vaddr':
      o.c?.invalidateVaddr(b('iova'), b('size'));
      o.c?.updateVaddr(b('iova'), b('va'), b('size'));
      return;
    case 'device':
      o.d = o.c?.device(c.name as string);
      return;
    case 'region':
      o.d?.readRegion(n('index') % 10, n('offset'), n('length'));
      o.d?.writeRegion(n('index') % 10, n('offset'), new Uint8Array(n('length')));
      return;
    case 'config':
      o.d?.writeConfig16(n('offset'), n('value'));
      o.d?.readConfig16(n('offset'));
      return;
    case 'mmio': {
      const m = o.d?.mapRegion(PciRegion.Bar0, n('offset'), n('length'));
      m?.write32(n('at'), 1);
      m?.read64(n('at'));
      return;
    }
    case 'irq':
      o.d?.irqInfo(n('index'));
      o.d?.setIrqsNone(n('index'), n('start'), n('count'), 'trigger');
      return;
    case 'reset':
      o.d?.reset();
      return;
    case 'tceWindow':
      o.t?.createWindow(n('shift'), b('size'));
      return;
    case 'tceRemove':
      o.t?.removeWindow(b('start'));
      return;
    case 'register':
      return o.t?.register(va(b('va'), c.inBuf as boolean), b('size'));
    case 'unregister':
      return o.t?.unregister(va(b('va'), c.inBuf as boolean), b('size'));
    case 'tceMap':
      return o.t?.map(b('iova'), va(b('va'), c.inBuf as boolean), b('size'));
    case 'tceUnmap':
      return o.t?.unmap(b('iova'), b('size'));
    case 'close':
      o.d?.close();
      o.c?.close();
      o.t?.release();
      return;
  }
}

test('random call sequences through the napi API answer with values or VfioErrors and never abort', (t) => {
  fc.assert(
    fc.property(fc.boolean(), fc.array(call, { minLength: 1, maxLength: 40 }), (pseries, calls) => {
      const host = VfioHost.mock(pseries ? { spapr: true } : {});
      const o: Obj = {};
      for (const c of calls) {
        try {
          run(host, o, c as { op: string } & Record<string, unknown>);
        } catch (e) {
          // Only the binding's own errors: a TypeError or RangeError would be
          // an argument the binding let through unchecked.
          if (!(e instanceof VfioError)) throw e;
        }
      }
      try {
        o.d?.close();
        o.c?.close();
        o.t?.release();
      } catch (e) {
        if (!(e instanceof VfioError)) throw e;
      }
    }),
    { numRuns: 300 },
  );
  t.pass();
});
