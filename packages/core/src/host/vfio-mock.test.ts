import test from 'ava';
import { createFixtureHost, FIXTURE_HOST_NAMES } from '@vfiokit/testkit';
import { discoverHost } from './discover';
import type { HostModel, PciDevice } from './model';
import { IommuType, VfioHost } from '../vfio/index';
import { checkViability } from './viability';
import { vfioMockHostConfig } from './vfio-mock';

test('the mock host of the workstation has its groups and drivers', (t) => {
  const config = vfioMockHostConfig(discoverHost(createFixtureHost('workstation').fs));
  t.deepEqual(
    config.groups?.find((g) => g.id === 1)?.devices.map((d) => [d.address, d.driver]),
    [
      ['0000:00:01.0', 'pcieport'],
      ['0000:01:00.0', 'nouveau'],
      ['0000:01:00.1', 'snd_hda_intel'],
    ],
  );
});

test('direct-relaxable regions stay usable IOVA space, the MSI window does not', (t) => {
  const config = vfioMockHostConfig(discoverHost(createFixtureHost('workstation').fs));
  t.deepEqual(config.groups?.find((g) => g.id === 9)?.reserved, [{ start: '0xfee00000', end: '0xfeefffff' }]);
});

/**
 * The model with one device of group `id` moved to vfio-pci, as an operator
 * binding just that function would leave it: the mock opens only groups that
 * have a vfio-pci device (/dev/vfio/N exists only then), and the rest of the
 * group is what viability is about.
 */
function withOneOnVfio(model: HostModel, id: number): HostModel | undefined {
  const chosen = model.groups.find((g) => g.id === id)?.devices.find((d) => !d.isBridge);
  if (!chosen) return undefined;
  const moved = (d: PciDevice): PciDevice => (d === chosen ? { ...d, driver: 'vfio-pci' } : d);
  return { ...model, devices: model.devices.map(moved), groups: model.groups.map((g) => ({ ...g, devices: g.devices.map(moved) })) };
}

for (const name of FIXTURE_HOST_NAMES.filter((n) => n !== 'no-iommu')) {
  test(`vfio-core's mock and checkViability agree on every group of ${name}`, (t) => {
    const base = discoverHost(createFixtureHost(name).fs);
    const seen: [number, boolean][] = [];
    const expected: [number, boolean][] = [];
    for (const g of base.groups) {
      const model = withOneOnVfio(base, g.id);
      if (!model) continue;
      const group = model.groups.find((x) => x.id === g.id)!;
      seen.push([g.id, VfioHost.mock(vfioMockHostConfig(model)).groupStatus(g.id).viable]);
      expected.push([g.id, checkViability(model, group).viable]);
    }
    t.deepEqual(seen, expected);
  });
}

test("a POWER host is vfio-core's pseries mock: its group opens as an sPAPR TCE container, and type1 is refused as that kernel refuses it", (t) => {
  const model = withOneOnVfio(discoverHost(createFixtureHost('power8').fs), 2)!;
  const host = VfioHost.mock(vfioMockHostConfig(model));
  t.false(host.checkExtension(IommuType.Type1v2));
  t.true(host.checkExtension(IommuType.SpaprTceV2));
  const tce = host.openTceContainer(2);
  t.is(tce.group, 2);
  // QEMU's pseries PE: a 1 GiB 32-bit default window at 0, as the pseries lab measured.
  t.deepEqual([tce.info().dma32Start, tce.info().dma32Size], [0n, 0x40000000n]);
  const err = t.throws(() => VfioHost.mock(vfioMockHostConfig(model)).openType1([2])) as { code?: string; ioctl?: string; message: string };
  t.is(`${err.ioctl} ${err.code}`, 'VFIO_SET_IOMMU ENODEV', err.message);
});

test("the mock container's IOVA ranges span the host IOMMU's address width, less the MSI window", (t) => {
  const model = withOneOnVfio(discoverHost(createFixtureHost('sriov-server').fs), 4)!;
  const host = VfioHost.mock(vfioMockHostConfig(model));
  const container = host.openType1([4]);
  t.deepEqual(container.iommuInfo().iovaRanges, [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: 0xffffffffffffn },
  ]);
});

test("on a host without interrupt remapping the mock refuses SET_IOMMU with EPERM, as that host's kernel does", (t) => {
  const model = withOneOnVfio(discoverHost(createFixtureHost('no-interrupt-remapping').fs), 5)!;
  const host = VfioHost.mock(vfioMockHostConfig(model));
  const err = t.throws(() => host.openType1([5])) as { code?: string; ioctl?: string; message: string };
  t.is(err.code, 'EPERM', err.message);
  t.is(err.ioctl, 'VFIO_SET_IOMMU');
});

test("the AMD server's mock container answers as the lab's AMD-Vi: the HyperTransport hole cut out, the aperture up to 2^64", (t) => {
  const model = withOneOnVfio(discoverHost(createFixtureHost('amd-server').fs), 7)!;
  const host = VfioHost.mock(vfioMockHostConfig(model));
  const container = host.openType1([7]);
  t.deepEqual(container.iommuInfo().iovaRanges, [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: 0xfcffffffffn },
    { start: 0x10000000000n, end: 0xffffffffffffffffn },
  ]);
});
