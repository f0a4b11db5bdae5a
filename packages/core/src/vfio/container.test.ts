import test from 'ava';
import { IommuType, VfioHost } from './index';

test('the mock container reports VFIO API version 0 as the kernel does', (t) => {
  t.is(VfioHost.mock().apiVersion(), 0);
});

test('the mock container offers type1 and type1v2 but not sPAPR TCE on an x86 host', (t) => {
  const c = VfioHost.mock();
  t.true(c.checkExtension(IommuType.Type1));
  t.true(c.checkExtension(IommuType.Type1v2));
  t.false(c.checkExtension(IommuType.SpaprTceV2));
});

test("a named host IOMMU profile gives groups the caller names without `reserved` its MSI window, as the kernel reserves it in every group (SMMUv3's doorbell at 0x8000000, measured by the arm64 lab)", (t) => {
  const host = VfioHost.mock({ iommuProfile: 'smmuv3', groups: [{ id: 5, devices: [{ address: '0000:00:03.0', driver: 'vfio-pci' }] }] });
  const c = host.openType1([5]);
  t.deepEqual(
    c.iommuInfo().iovaRanges?.map((r) => [r.start, r.end]),
    [
      [0n, 0x7ffffffn],
      [0x8100000n, 0xffffffffffffn],
    ],
  );
  // Given explicitly, `reserved` is what the caller says, even none.
  const bare = VfioHost.mock({ iommuProfile: 'smmuv3', groups: [{ id: 5, devices: [{ address: '0000:00:03.0', driver: 'vfio-pci' }], reserved: [] }] }).openType1([5]);
  t.deepEqual(bare.iommuInfo().iovaRanges?.map((r) => [r.start, r.end]), [[0n, 0xffffffffffffn]]);
});
