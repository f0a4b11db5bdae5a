import test from 'ava';
import { DmaFlags, HostMemory, VfioError, VfioHost } from './index';

/** Two groups with one edu each, on a kernel with iommufd (the iommufd lab's 6.12). */
function iommufdHost(): VfioHost {
  return VfioHost.mock({
    iommufd: true,
    groups: [
      { id: 1, devices: [{ address: '0000:00:03.0', driver: 'vfio-pci' }] },
      { id: 2, devices: [{ address: '0000:00:04.0', driver: 'vfio-pci' }] },
    ],
  });
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as VfioError).code;
  }
  return undefined;
}

test('a host without iommufd has no /dev/iommu: openIommufd fails with ENOENT', (t) => {
  t.is(code(() => VfioHost.mock().openIommufd([0])), 'ENOENT');
});

test('openIommufd attaches every device to one IOAS through one automatic HWPT', (t) => {
  const s = iommufdHost().openIommufd([0, 1]);
  t.deepEqual([s.cdevs, s.hwpts, s.ioasId], [[0, 1], [3, 3], 1]);
});

test('an attached IOAS maps around the MSI window at page alignment', (t) => {
  const r = iommufdHost().openIommufd([0]).iovaRanges();
  t.deepEqual(r, {
    ranges: [
      { start: 0n, end: 0xfedfffffn },
      { start: 0xfef00000n, end: 0x7fffffffffn },
    ],
    alignment: 0x1000n,
  });
});

test('a device bound through its cdev keeps its group from being opened as a type1 container', (t) => {
  const host = iommufdHost();
  const s = host.openIommufd([0]);
  t.is(code(() => host.openType1([1])), 'EBUSY');
  s.close();
  t.true(host.openType1([1]).isOpen);
});

test('a batch into the IOAS is one ioctl when contiguous, and all or nothing', (t) => {
  const s = iommufdHost().openIommufd([0]);
  const mem = new HostMemory(0x10000);
  const entries = new BigUint64Array(16 * 3);
  for (let i = 0; i < 16; i++) entries.set([0x100000n + BigInt(i) * 0x1000n, mem.address + BigInt(i) * 0x1000n, 0x1000n], i * 3);
  t.is(s.mapBatch(entries, DmaFlags.ReadWrite).ioctls, 1);
  const err = t.throws(() => s.mapBatch(entries)) as VfioError;
  t.is(err.code, 'EEXIST');
  t.is(s.unmapDma(0x100000n, 0x10000n), 0x10000n);
});

test('an unmap that cuts a mapping fails with ENOENT as iommufd answers, not EINVAL as type1', (t) => {
  const s = iommufdHost().openIommufd([0]);
  const mem = new HostMemory(0x2000);
  s.mapDma(0x100000n, mem.address, 0x2000n);
  t.is(code(() => s.unmapDma(0x100000n, 0x1000n)), 'ENOENT');
});

test('the kernel chooses an IOVA when none is given', (t) => {
  const s = iommufdHost().openIommufd([0]);
  const mem = new HostMemory(0x1000);
  const iova = s.mapDma(null, mem.address, 0x1000n);
  t.is(iova % 0x1000n, 0n);
  t.is(s.unmapDma(iova, 0x1000n), 0x1000n);
});

test('a closed space answers EBADF and names openIommufd', (t) => {
  const s = iommufdHost().openIommufd([0]);
  s.close();
  const err = t.throws(() => s.unmapAll()) as VfioError;
  t.is(err.code, 'EBADF');
  t.false(s.isOpen);
});

test('hwInfo names the VT-d and no dirty tracking: a migration cannot ask this IOMMU which pages a device wrote', (t) => {
  const s = iommufdHost().openIommufd([0, 1]);
  const info = s.hwInfo(1);
  // Bit 0 is IOMMU_HW_CAP_DIRTY_TRACKING; other bits follow the kernel
  // version the mock models (7.2's ATS bit), not the IOMMU.
  t.deepEqual([info.dataType, info.capabilities & 1n, info.dirtyTracking], [1, 0n, false]);
  t.is(code(() => s.hwInfo(5)), 'ENOENT');
  s.close();
  t.is(code(() => s.hwInfo(0)), 'EBADF');
});

test('a device of the space has its config space and BARs: the command register takes bus master, edu BAR0 reads its identification', (t) => {
  const s = iommufdHost().openIommufd([0]);
  s.writeConfig16(0, 4, s.readConfig16(0, 4) | 0x6);
  t.is(s.readConfig16(0, 4) & 0x6, 0x6);
  const bar0 = s.mapRegion(0, 0, 0, 4096);
  // hw/misc/edu.c: 0x00 reads 0x010000ed (version 1.0, "ed").
  t.is(bar0.read32(0), 0x010000ed);
  t.is(code(() => s.mapRegion(7, 0, 0, 4096)), 'ENOENT');
  s.close();
  t.is(code(() => s.readConfig16(0, 4)), 'EBADF');
});
