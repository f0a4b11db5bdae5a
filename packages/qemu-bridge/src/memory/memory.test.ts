import test from 'ava';
import { FakeQmpPeer } from '@vfiokit/testkit';
import { MemoryLayoutError } from '../errors';
import { connectQmp } from '../qmp/transport';
import { q35RamSplit, readGuestMemoryLayout } from './index';

const GiB = 1n << 30n;

test('q35 keeps RAM below 2.75 GiB entirely under 4 GiB', (t) => {
  t.deepEqual(q35RamSplit(0xa0000000n), { below4g: 0xa0000000n, above4g: 0n });
});

test('q35 puts 2 GiB below 4 GiB once RAM reaches 2.75 GiB', (t) => {
  t.deepEqual(q35RamSplit(0xb0000000n), { below4g: 2n * GiB, above4g: 0x30000000n });
});

test('max-ram-below-4g lowers the part below 4 GiB', (t) => {
  t.deepEqual(q35RamSplit(2n * GiB, 1n * GiB), { below4g: 1n * GiB, above4g: 1n * GiB });
});

test('max-ram-below-4g of 0 means no limit, as pc_q35_init reads it', (t) => {
  t.deepEqual(q35RamSplit(1n * GiB, 0n), { below4g: 1n * GiB, above4g: 0n });
});

async function layoutFrom(handlers: Parameters<typeof FakeQmpPeer.listen>[0]) {
  const peer = await FakeQmpPeer.listen(handlers);
  const qmp = await connectQmp(peer.address);
  try {
    return await readGuestMemoryLayout(qmp);
  } finally {
    await qmp.close();
    await peer.close();
  }
}

test('a pseries guest has its boot RAM at 0 and DIMMs where QEMU put them', async (t) => {
  const layout = await layoutFrom({
    handlers: {
      'qom-get': () => 'pseries-7.2-machine',
      'query-memory-size-summary': () => ({ 'base-memory': 1 << 30, 'plugged-memory': 256 << 20 }),
      'query-memory-devices': () => [
        { type: 'dimm', data: { addr: 0x80000000, size: 256 << 20, slot: 0, node: 0, memdev: '/objects/m0', id: 'd0', hotplugged: true, hotpluggable: true } },
      ],
    },
  });
  t.deepEqual(layout.regions, [
    { name: 'ram', gpa: 0n, size: 1n * GiB, source: 'boot' },
    { name: 'd0', gpa: 0x80000000n, size: 256n << 20n, source: 'hotplug' },
  ]);
});

test('virtio-mem with plugged memory is refused: QMP does not say which blocks', async (t) => {
  const err = await t.throwsAsync(
    layoutFrom({
      handlers: {
        'qom-get': () => 'pseries-7.2-machine',
        'query-memory-size-summary': () => ({ 'base-memory': 1 << 30, 'plugged-memory': 128 << 20 }),
        'query-memory-devices': () => [
          { type: 'virtio-mem', data: { memaddr: 0x100000000, size: 128 << 20, 'max-size': 1 << 30, 'requested-size': 128 << 20, 'block-size': 2 << 20, node: 0, memdev: '/objects/vm0', id: 'vm0' } },
        ],
      },
    }),
    { instanceOf: MemoryLayoutError },
  );
  t.is(err!.code, 'MEMORY_LAYOUT_UNSUPPORTED');
  t.regex(err!.message, /^virtio-mem vm0 has 0x8000000 plugged in 0x40000000 at 0x100000000/);
});
