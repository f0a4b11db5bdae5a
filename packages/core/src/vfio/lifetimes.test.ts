// Lifetimes of what vfio-core hands out, under collection: ava runs this
// package with `node --expose-gc`, and every step below forces a full
// collection (and lets napi's deferred finalizers run) before it checks.
// The bug this guards (issue #13): a container whose group object was
// collected lost its IOMMU and every mapping (remap EINVAL, not EEXIST).
import test from 'ava';
import { openMockDmaTarget } from '../dma/vfio-target';
import { VTD_HOST, X86_MSI_WINDOW } from '../dma/target';
import { HostMemory, PciRegion, VfioError, VfioHost } from './index';
import { collect } from './collect.test-support';
import { outcome as code } from './lab/support';
import { HOST_RAM } from './host-ram.test-support';

const EDU = '0000:00:03.0';
const VA = HOST_RAM;


test.serial('a mapping made through openType1Target survives collection: the remap is EEXIST and iommuInfo answers', async (t) => {
  const target = openMockDmaTarget(VTD_HOST, [{ id: 1, reservedRegions: [X86_MSI_WINDOW] }]);
  t.is(target.mapBatch({ entries: new BigUint64Array([0x100000n, VA, 0x1000n]), flags: new Uint32Array([3]) }), 1);
  await collect();
  t.is(code(() => target.container.mapDma(0x100000n, VA, 0x1000n)), 'EEXIST');
  await collect();
  t.is(target.container.iommuInfo().dmaAvail, 65534);
});

test.serial('two thousand maps with a collection after every hundred keep every mapping', async (t) => {
  const c = VfioHost.mock().openType1([1]);
  for (let i = 0n; i < 2000n; i++) {
    c.mapDma(0x100000n + i * 0x2000n, VA + i * 0x1000n, 0x1000n);
    if (i % 100n === 99n) await collect();
  }
  t.is(c.iommuInfo().dmaAvail, 65535 - 2000);
  t.is(code(() => c.mapDma(0x100000n + 1999n * 0x2000n, VA, 0x1000n)), 'EEXIST');
  t.is(code(() => c.mapDma(0x100000n, VA, 0x1000n)), 'EEXIST');
});

test.serial('a device keeps its container open after the container object is collected', async (t) => {
  const host = VfioHost.mock();
  let device: ReturnType<ReturnType<VfioHost['openType1']>['device']> | undefined = host.openType1([1]).device(EDU);
  await collect();
  t.is(device.readConfig16(0), 0x1234);
  // The group is still held: a second container cannot open it (vfio_group_fops_open).
  t.is(code(() => host.openType1([1])), 'EBUSY');
  device = undefined;
  await collect();
  // The last handle gone, device, group and container closed: the group opens again.
  t.true(host.openType1([1]).isOpen);
});

test.serial('a BAR mapping keeps its device and container open after both objects are collected', async (t) => {
  const host = VfioHost.mock();
  const bar = host.openType1([1]).device(EDU).mapRegion(PciRegion.Bar0, 0, 0x1000);
  await collect();
  t.is(bar.read32(0), 0x010000ed);
  t.is(code(() => host.openType1([1])), 'EBUSY');
});

test.serial('edu DMA through a mapping still lands after collections between every step', async (t) => {
  const c = VfioHost.mock().openType1([1]);
  await collect();
  const dev = c.device(EDU);
  dev.writeConfig16(4, dev.readConfig16(4) | 0x6);
  const dst = new HostMemory(4096);
  c.mapDma(0x200000n, dst.address, 0x1000n);
  await collect();
  const bar = dev.mapRegion(PciRegion.Bar0, 0, 0x1000);
  await collect();
  bar.write64(0x80, 0x40000n);
  bar.write64(0x88, 0x200000n);
  bar.write64(0x90, 16n);
  bar.write64(0x98, 3n); // edu buffer -> RAM: its 16 bytes of zeros after reset
  await collect();
  t.is(bar.read64(0x98) & 1n, 0n);
  t.is(dst.read(0, 16).length, 16);
  t.is(code(() => c.mapDma(0x200000n, dst.address, 0x1000n)), 'EEXIST');
  dst.free();
});

test('close is idempotent and a closed container answers EBADF naming itself', (t) => {
  const c = VfioHost.mock().openType1([1]);
  c.close();
  c.close();
  t.false(c.isOpen);
  const e = t.throws(() => c.mapDma(0x100000n, VA, 0x1000n), { instanceOf: VfioError });
  t.is(e?.code, 'EBADF');
  t.is(e?.ioctl, 'VFIO_IOMMU_MAP_DMA');
  t.is(e?.object, 'mock type1 container of group 1 (closed)');
  t.is(t.throws(() => c.iommuInfo(), { instanceOf: VfioError })?.code, 'EBADF');
  t.is(t.throws(() => c.device(EDU), { instanceOf: VfioError })?.code, 'EBADF');
});

test('closing a container with a device and a BAR mapping open releases the group at once', (t) => {
  const host = VfioHost.mock();
  const c = host.openType1([1]);
  const dev = c.device(EDU);
  const bar = dev.mapRegion(PciRegion.Bar0, 0, 0x1000);
  c.close();
  t.true(host.openType1([1]).isOpen);
  const e = t.throws(() => dev.readConfig16(0), { instanceOf: VfioError });
  t.is(e?.code, 'EBADF');
  t.is(e?.object, `device ${EDU} of the mock type1 container of group 1 (closed)`);
  const m = t.throws(() => bar.read32(0), { instanceOf: VfioError });
  t.is(m?.code, 'EBADF');
  t.is(m?.object, `region 0 mapping of device ${EDU} of the mock type1 container of group 1 (closed)`);
});

test('a device closed alone answers EBADF while its container keeps its mappings', (t) => {
  const c = VfioHost.mock().openType1([1]);
  c.mapDma(0x100000n, VA, 0x1000n);
  const dev = c.device(EDU);
  const bar = dev.mapRegion(PciRegion.Bar0, 0, 0x1000);
  dev.close();
  dev.close();
  t.is(code(() => dev.info()), 'EBADF');
  t.is(code(() => bar.read32(0)), 'EBADF');
  t.is(code(() => c.mapDma(0x100000n, VA, 0x1000n)), 'EEXIST');
  t.is(c.device(EDU).readConfig16(0), 0x1234);
});

test('a group named twice is refused with EBUSY and nothing stays open', (t) => {
  const host = VfioHost.mock();
  t.is(code(() => host.openType1([1, 1])), 'EBUSY');
  t.true(host.openType1([1]).isOpen);
});

test('a failed open closes the groups it had attached', (t) => {
  const host = VfioHost.mock({ groups: [{ id: 1, devices: [{ address: EDU, driver: 'vfio-pci' }] }] });
  t.is(code(() => host.openType1([1, 7])), 'ENOENT');
  t.deepEqual(host.openType1([1]).groups, [1]);
});
