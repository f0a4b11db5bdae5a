import test from 'ava';
import { IdentityMap } from './identity';
import { placeRam, q35Layout } from './layout';
import { ContainerMappings } from './mappings';
import { VTD_HOST, X86_MSI_WINDOW } from './target';
import { Type1Model } from './type1-model';
import { openMockDmaTarget } from './vfio-target';
import { IovaCollisionError, InvalidLayoutError } from './errors';
import { VfioError } from '../vfio/index';
import { HOST_RAM } from '../vfio/host-ram.test-support';

const GiB = 1n << 30n;
const group = { id: 12, reservedRegions: [X86_MSI_WINDOW] };

function setup() {
  const model = new Type1Model(VTD_HOST, openMockDmaTarget(VTD_HOST, [group]));
  const container = new ContainerMappings('container 0', model, VTD_HOST.dmaEntryLimit);
  return { model, container, map: new IdentityMap(container, VTD_HOST, [group]) };
}

test('an 8 GiB q35 guest is identity-mapped in one batched call', (t) => {
  const { model, container, map } = setup();
  map.mapAll(placeRam(q35Layout(8n * GiB), HOST_RAM));
  t.is(container.stats.calls, 1);
  t.deepEqual(
    model.mappings().map((m) => [m.iova, m.size]),
    [
      [0n, 2n * GiB],
      [4n * GiB, 6n * GiB],
    ],
  );
});

test('RAM reaching into the MSI window is refused naming the region and the window, and nothing is mapped', (t) => {
  const { model, map } = setup();
  const layout = placeRam({ regions: [{ name: 'ram-below-4g', gpa: 0n, size: 0xff000000n, source: 'boot' }] }, HOST_RAM);
  const err = t.throws(() => map.mapAll(layout), { instanceOf: IovaCollisionError });
  t.is(
    err.collisions[0],
    "RAM region ram-below-4g (0x0-0xfeffffff) collides with group 12's msi reserved region 0xfee00000-0xfeefffff, the x86 MSI window",
  );
  t.is(model.mappings().length, 0);
});

test('RAM above the host IOVA ranges is refused as outside them', (t) => {
  const { map } = setup();
  const layout = placeRam({ regions: [{ name: 'ram-above-4g', gpa: 1n << 39n, size: GiB, source: 'boot' }] }, HOST_RAM);
  const err = t.throws(() => map.mapAll(layout), { instanceOf: IovaCollisionError });
  t.is(
    err.collisions[0],
    'RAM region ram-above-4g (0x8000000000-0x803fffffff) reaches 0x8000000000-0x803fffffff, outside the host IOMMU\'s IOVA ranges (0x0-0xfedfffff, 0xfef00000-0x7fffffffff)',
  );
});

test('a hot-plugged DIMM is mapped by one call and unmapped by one call', (t) => {
  const { model, container, map } = setup();
  map.mapAll(placeRam(q35Layout(2n * GiB), HOST_RAM));
  map.plug({ name: 'dimm0', gpa: 8n * GiB, size: GiB, source: 'hotplug', hva: HOST_RAM + 32n * GiB });
  t.deepEqual(model.mappings().map((m) => m.iova), [0n, 8n * GiB]);
  map.unplug('dimm0');
  t.deepEqual(model.mappings().map((m) => m.iova), [0n]);
  t.is(container.stats.calls, 3);
});

test('a DIMM contiguous with boot RAM in both address spaces is kept a separate mapping so it can be unplugged', (t) => {
  const { model, map } = setup();
  const boot = { name: 'ram-below-4g', gpa: 0n, size: GiB, source: 'boot' as const, hva: HOST_RAM };
  map.mapAll({ regions: [boot] });
  map.plug({ name: 'dimm0', gpa: GiB, size: GiB, source: 'hotplug', hva: HOST_RAM + GiB });
  map.unplug('dimm0');
  t.deepEqual(model.mappings().map((m) => [m.iova, m.size]), [[0n, GiB]]);
});

test('boot RAM cannot be unplugged', (t) => {
  const { map } = setup();
  map.mapAll(placeRam(q35Layout(GiB), HOST_RAM));
  t.throws(() => map.unplug('ram-below-4g'), { instanceOf: InvalidLayoutError, message: /is boot memory/ });
});

test("a map the kernel refuses surfaces as vfio-core's VfioError as thrown, naming the ioctl, the entry and the fix, and the record stays empty", (t) => {
  // The policy is told of no reserved region, but the mock's group has the MSI window: the kernel's answer wins.
  const target = openMockDmaTarget(VTD_HOST, [group]);
  const container = new ContainerMappings('container 0', target, VTD_HOST.dmaEntryLimit);
  const map = new IdentityMap(container, { ...VTD_HOST, iovaRanges: [{ start: 0n, size: 1n << 39n }] }, []);
  const layout = placeRam({ regions: [{ name: 'ram-below-4g', gpa: 0n, size: 0xff000000n, source: 'boot' }] }, HOST_RAM);
  const err = t.throws(() => map.mapAll(layout), { instanceOf: VfioError });
  t.deepEqual([err.code, err.errno, err.ioctl, err.entryIndex, container.size], ['EINVAL', 22, 'VFIO_IOMMU_MAP_DMA', 0, 0]);
  t.truthy(err.hint);
  t.true(err.message.includes(err.object) && err.message.endsWith(err.hint!), err.message);
});

test('a guest without an IOMMU maps its RAM once into one container shared by all its groups', (t) => {
  const g13 = { id: 13, reservedRegions: [X86_MSI_WINDOW] };
  const model = new Type1Model(VTD_HOST, openMockDmaTarget(VTD_HOST, [group, g13]));
  const container = new ContainerMappings('shared container', model, VTD_HOST.dmaEntryLimit);
  new IdentityMap(container, VTD_HOST, [group, g13]).mapAll(placeRam(q35Layout(4n * GiB), HOST_RAM));
  t.deepEqual([container.stats.calls, model.mappings().length, model.disagreements], [1, 2, []]);
});
