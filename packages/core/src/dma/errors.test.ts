import test from 'ava';
import { isVfiokitError } from '../errors';
import { DmaError, DmaTargetError, EntryLimitError, GuestOpError, HostRefusalError, InvalidLayoutError, IovaCollisionError, TraceError } from './errors';
import { ModelError, Type1Model } from './type1-model';
import { VTD_HOST } from './target';

test('every DMA error is a core VfiokitError with its stable code', (t) => {
  const errors = [
    new InvalidLayoutError('m'),
    new IovaCollisionError('m', []),
    new GuestOpError('m'),
    new EntryLimitError('m'),
    new HostRefusalError('m'),
    new DmaTargetError('m', 'EINVAL'),
    new TraceError('m'),
  ];
  t.deepEqual(
    errors.map((e) => [e instanceof DmaError, isVfiokitError(e), e.name, e.code]),
    [
      [true, true, 'InvalidLayoutError', 'DMA_INVALID_LAYOUT'],
      [true, true, 'IovaCollisionError', 'DMA_IOVA_COLLISION'],
      [true, true, 'GuestOpError', 'DMA_GUEST_OP'],
      [true, true, 'EntryLimitError', 'DMA_ENTRY_LIMIT'],
      [true, true, 'HostRefusalError', 'DMA_HOST_REFUSAL'],
      [true, true, 'DmaTargetError', 'DMA_TARGET_FAILED'],
      [true, true, 'TraceError', 'DMA_TRACE'],
    ],
  );
});

test('the type1v2 model standing alone refuses as a DMA target: DMA_TARGET_FAILED with the errno the kernel would give', (t) => {
  const model = new Type1Model(VTD_HOST);
  const batch = { entries: new BigUint64Array([0x1000n, 0x7f0000000000n, 0x800n]), flags: new Uint32Array([3]) };
  const err = t.throws(() => model.mapBatch(batch), { instanceOf: ModelError })!;
  t.deepEqual([isVfiokitError(err), err.code, err.errno, err.message], [true, 'DMA_TARGET_FAILED', 'EINVAL', 'unaligned map 0x1000+0x800']);
});
