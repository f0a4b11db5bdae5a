import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost } from '../host/discover';
import type { HostModel, PciDevice } from '../host/model';
import { vfioHostOf } from '../host/vfio-mock';
import { openHostContainer } from './vfio-target';

const XHCI = '0000:04:00.0';

/** The workstation's model with its USB controller (group 11) on `driver`. */
function workstationWith(driver: string | undefined): { host: ReturnType<typeof createFixtureHost>; model: HostModel } {
  const host = createFixtureHost('workstation');
  const base = discoverHost(host.fs);
  const moved = (d: PciDevice): PciDevice => (d.address === XHCI ? { ...d, driver } : d);
  return { host, model: { ...base, devices: base.devices.map(moved), groups: base.groups.map((g) => ({ ...g, devices: g.devices.map(moved) })) } };
}

test('a host container refuses a group still on its host driver before any VFIO call, naming the bind that fixes it', (t) => {
  const { host, model } = workstationWith('xhci_hcd');
  const vfio = vfioHostOf(model, 'mock');
  const err = t.throws(() => openHostContainer(vfio, host.fs, model, [11])) as { code?: string; hint?: string; message: string };
  t.is(err.code, 'HOST_GROUP_NOT_VIABLE');
  t.is(err.message, `group 11 is not viable: ${XHCI} is bound to xhci_hcd; run 'vfiokit bind ${XHCI}' to move the whole group to vfio-pci`);
  t.is(err.hint, 'vfiokit bind 11');
  t.is(vfio.ioctlCount(), 0);
});

test('a host container refuses a viable group with no device on vfio-pci, since /dev/vfio/N does not exist yet', (t) => {
  const { host, model } = workstationWith(undefined);
  const vfio = vfioHostOf(model, 'mock');
  const err = t.throws(() => openHostContainer(vfio, host.fs, model, [11])) as { code?: string; hint?: string; message: string };
  t.deepEqual(
    [err.code, err.message, err.hint],
    ['HOST_GROUP_NOT_BOUND', `group 11 is viable but ${XHCI} is not on vfio-pci, so VFIO cannot open it: /dev/vfio/11 exists once a device of the group is on vfio-pci`, 'vfiokit bind 11'],
  );
  t.is(vfio.ioctlCount(), 0);
});

test("a host container holds the bound group with its reserved regions and the IOMMU's limits, and closes once", (t) => {
  const { host, model } = workstationWith('vfio-pci');
  const opened = openHostContainer(vfioHostOf(model, 'mock'), host.fs, model, [11]);
  t.deepEqual(opened.groups, [{ id: 11, reservedRegions: model.groups.find((g) => g.id === 11)!.reservedRegions }]);
  t.is(opened.info.dmaEntryLimit, 65535);
  t.deepEqual(opened.target.container.groups, [11]);
  opened.close();
  opened.close();
  t.false(opened.target.container.isOpen);
});
