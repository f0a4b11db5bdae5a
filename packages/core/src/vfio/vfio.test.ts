import test from 'ava';
import { DmaFlags, HostMemory, PciRegion, VfioError, VfioHost, packTriples, type Device } from './index';
import { HOST_RAM } from './host-ram.test-support';

const EDU = '0000:00:03.0';
const VA = HOST_RAM;

function ready(config?: Parameters<typeof VfioHost.mock>[0]) {
  const host = VfioHost.mock(config);
  const container = host.openType1([1]);
  return { host, container };
}

function pages(n: number, iova: bigint, stride: bigint): BigUint64Array {
  return packTriples(Array.from({ length: n }, (_, i) => [iova + BigInt(i) * stride, VA + BigInt(i) * stride, 0x1000n] as const));
}

test('the iommu info reports the VT-d page sizes, both IOVA ranges and 65535 entries', (t) => {
  const info = ready().container.iommuInfo();
  t.is(info.iovaPgsizes, 0x40201000n);
  t.deepEqual(info.iovaRanges, [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: 0x7fffffffffn },
  ]);
  t.is(info.dmaAvail, 65535);
});

test('an overlapping map throws a VfioError with code EEXIST', (t) => {
  const { container } = ready();
  container.mapDma(0x100000n, VA, 0x4000n, DmaFlags.ReadWrite);
  const e = t.throws(() => container.mapDma(0x102000n, VA, 0x1000n), { instanceOf: VfioError });
  t.is(e?.code, 'EEXIST');
  t.is(e?.errno, 17);
  t.is(e?.ioctl, 'VFIO_IOMMU_MAP_DMA');
});

test('unmapping part of a mapping throws EINVAL', (t) => {
  const { container } = ready();
  container.mapDma(0x100000n, VA, 0x4000n);
  t.is(t.throws(() => container.unmapDma(0x100000n, 0x1000n), { instanceOf: VfioError })?.code, 'EINVAL');
});

test('unmap returns the number of bytes removed', (t) => {
  const { container } = ready();
  container.mapDma(0x100000n, VA, 0x4000n);
  t.is(container.unmapDma(0x100000n, 0x4000n), 0x4000n);
});

test('a type1 container of no group is refused with EINVAL, as the kernel refuses SET_IOMMU without one', (t) => {
  const e = t.throws(() => VfioHost.mock().openType1([]), { instanceOf: VfioError });
  t.is(e?.code, 'EINVAL');
  t.is(e?.ioctl, 'VFIO_SET_IOMMU');
});

test('a group with a device on a host driver is not viable and cannot be attached', (t) => {
  const host = VfioHost.mock({
    groups: [{ id: 5, devices: [{ address: '0000:01:00.0', driver: 'vfio-pci' }, { address: '0000:01:00.1', driver: 'snd_hda_intel' }] }],
  });
  t.false(host.groupStatus(5).viable);
  const e = t.throws(() => host.openType1([5]), { instanceOf: VfioError });
  t.is(e?.code, 'EPERM');
  t.is(e?.ioctl, 'VFIO_GROUP_SET_CONTAINER');
  t.is(host.groupStatus(5).containerSet, false);
});

test('a contiguous batch of 256 pages is mapped with one ioctl', (t) => {
  const { container } = ready();
  const r = container.mapBatch(pages(256, 0x100000n, 0x1000n));
  t.deepEqual(r, { entries: 256, ioctls: 1, bytes: 256n * 0x1000n });
});

test('a failing batch names the entry and leaves nothing mapped', (t) => {
  const { container } = ready();
  container.mapDma(0x105000n, VA, 0x1000n);
  const e = t.throws(() => container.mapBatch(pages(8, 0x100000n, 0x1000n)), { instanceOf: VfioError });
  t.is(e?.entryIndex, 5);
  t.is(e?.code, 'EEXIST');
  t.is(container.iommuInfo().dmaAvail, 65534);
});

test('per-entry flags arrive as a Uint32Array', (t) => {
  const { container } = ready();
  const r = container.mapBatch(pages(4, 0x100000n, 0x1000n), new Uint32Array([3, 3, 1, 1]));
  t.is(r.ioctls, 2);
});

test('a batch whose length is not a multiple of three throws EINVAL', (t) => {
  const { container } = ready();
  t.is(t.throws(() => container.mapBatch(new BigUint64Array(4)), { instanceOf: VfioError })?.code, 'EINVAL');
});

test('unmapBatch takes iova and size pairs and reports the bytes unmapped', (t) => {
  const { container } = ready();
  container.mapBatch(pages(4, 0x100000n, 0x2000n));
  const r = container.unmapBatch(new BigUint64Array([0x100000n, 0x1000n, 0x102000n, 0x1000n, 0x104000n, 0x1000n]));
  t.is(r.bytes, 0x3000n);
});

test('the entry limit of the fixture is enforced with ENOSPC', (t) => {
  const { container } = ready({ dmaEntryLimit: 2 });
  const e = t.throws(() => container.mapBatch(pages(3, 0x100000n, 0x2000n)), { instanceOf: VfioError });
  t.is(e?.code, 'ENOSPC');
  t.is(e?.entryIndex, 2);
});

test('the edu device answers its id through a BAR0 mapping', (t) => {
  const { container } = ready();
  const bar = container.device(EDU).mapRegion(PciRegion.Bar0, 0, 0x1000);
  t.is(bar.read32(0), 0x010000ed);
});

test('the edu liveness register returns the bitwise NOT of what was written', (t) => {
  const { container } = ready();
  const bar = container.device(EDU).mapRegion(PciRegion.Bar0, 0, 0x1000);
  bar.write32(4, 0x12345678);
  t.is(bar.read32(4), ~0x12345678 >>> 0);
});

test('config space reads the edu vendor id', (t) => {
  const { container } = ready();
  t.is(container.device(EDU).readConfig16(0), 0x1234);
});

test('a device that no group of the container holds throws ENODEV', (t) => {
  const { container } = ready();
  const e = t.throws(() => container.device('0000:00:09.0'), { instanceOf: VfioError });
  t.is(e?.code, 'ENODEV');
  t.is(e?.ioctl, 'VFIO_GROUP_GET_DEVICE_FD');
});

test('a JSON config with hex strings sets page sizes and ranges', (t) => {
  const config = JSON.parse('{"iovaPgsizes":"0x10000","iovaRanges":[{"start":0,"end":"0xffffffff"}]}');
  const info = ready(config).container.iommuInfo();
  t.is(info.iovaPgsizes, 0x10000n);
  t.deepEqual(info.iovaRanges, [{ start: 0n, end: 0xffffffffn }]);
});

test('the error message names the call, the object and the fix', (t) => {
  const { container } = ready();
  const e = t.throws(() => container.mapDma(0xfee00000n, VA, 0x1000n), { instanceOf: VfioError });
  t.regex(e?.message ?? '', /^VFIO_IOMMU_MAP_DMA on mock container fd \d+ .* failed with EINVAL: .*IOVA ranges/);
});

test('a kernel host without /dev/vfio nodes throws ENOENT from open', (t) => {
  const host = VfioHost.kernel('/nonexistent-vfio-dir');
  t.is(host.kind, 'kernel');
  const e = t.throws(() => host.openType1([3]), { instanceOf: VfioError });
  t.is(e?.code, 'ENOENT');
  t.is(e?.ioctl, 'open');
});

test('mock-only calls on a kernel host throw ENOTTY', (t) => {
  const e = t.throws(() => VfioHost.kernel('/nonexistent-vfio-dir').ioctlCount(), { instanceOf: VfioError });
  t.is(e?.code, 'ENOTTY');
});

test('a hot reset of a device behind a bridge lists every function on its bus', (t) => {
  const host = VfioHost.mock({
    groups: [
      { id: 2, devices: [{ address: '0000:01:01.0', driver: 'vfio-pci' }, { address: '0000:01:02.0', driver: null }] },
    ],
  });
  const c = host.openType1([2]);
  t.deepEqual(c.device('0000:01:01.0').pciHotResetInfo(), [
    { groupId: 2, address: '0000:01:01.0' },
    { groupId: 2, address: '0000:01:02.0' },
  ]);
});

// QEMU's edu (hw/misc/edu.c): DMA registers and the device's own buffer.
const EDU_DMA_SRC = 0x80;
const EDU_DMA_DST = 0x88;
const EDU_DMA_COUNT = 0x90;
const EDU_DMA_CMD = 0x98;
const EDU_BUFFER = 0x40000n;

function eduDma(bar: ReturnType<Device['mapRegion']>, src: bigint, dst: bigint, count: number, toRam: boolean) {
  bar.write64(EDU_DMA_SRC, src);
  bar.write64(EDU_DMA_DST, dst);
  bar.write64(EDU_DMA_COUNT, BigInt(count));
  bar.write64(EDU_DMA_CMD, toRam ? 3n : 1n);
  while ((bar.read64(EDU_DMA_CMD) & 1n) !== 0n) {
    /* the mock finishes at once; the kernel's edu takes 100 ms */
  }
}

test('edu copies host memory through two IOMMU mappings', (t) => {
  const { container } = ready();
  const dev = container.device(EDU);
  dev.writeConfig16(4, dev.readConfig16(4) | 0x4); // bus mastering
  const src = new HostMemory(4096);
  const dst = new HostMemory(4096);
  src.write(0, Buffer.from('through the iommu'));
  container.mapDma(0x100000n, src.address, 0x1000n, DmaFlags.Read);
  container.mapDma(0x200000n, dst.address, 0x1000n, DmaFlags.Write);
  const bar = dev.mapRegion(PciRegion.Bar0, 0, 0x1000);
  eduDma(bar, 0x100000n, EDU_BUFFER, 17, false);
  eduDma(bar, EDU_BUFFER, 0x200000n, 17, true);
  t.is(dst.read(0, 17).toString(), 'through the iommu');
});

test('after unmap the same edu DMA writes nothing', (t) => {
  const { container } = ready();
  const dev = container.device(EDU);
  dev.writeConfig16(4, dev.readConfig16(4) | 0x4);
  const dst = new HostMemory(4096);
  container.mapDma(0x200000n, dst.address, 0x1000n, DmaFlags.Write);
  container.unmapDma(0x200000n, 0x1000n);
  eduDma(dev.mapRegion(PciRegion.Bar0, 0, 0x1000), EDU_BUFFER, 0x200000n, 64, true);
  t.deepEqual(dst.read(0, 64), Buffer.alloc(64));
});

test('a VfioError carries the fix as its hint', (t) => {
  const e = t.throws(() => VfioHost.mock().openType1([]), { instanceOf: VfioError });
  t.is(e?.hint, 'attach a group with VFIO_GROUP_SET_CONTAINER first, and set the IOMMU only once per container');
});

test('while dirty tracking, every mapped page reads dirty', (t) => {
  const { container } = ready();
  container.mapDma(0x100000n, VA, 0x3000n);
  container.startDirtyTracking();
  t.deepEqual([...container.dirtyBitmap(0x100000n, 0x4000n)], [0b111n]);
});

test('a live update gives an invalidated mapping its new host address', (t) => {
  const { container } = ready();
  container.mapDma(0x100000n, VA, 0x2000n);
  t.is(container.invalidateVaddr(0x100000n, 0x2000n), 0x2000n);
  container.updateVaddr(0x100000n, VA + 0x100000n, 0x2000n);
  t.is(t.throws(() => container.updateVaddr(0x100000n, VA, 0x2000n), { instanceOf: VfioError })?.code, 'EINVAL');
});
