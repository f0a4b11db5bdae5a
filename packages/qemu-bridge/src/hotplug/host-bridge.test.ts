// pseries hot-plug against the fake peer, with a small model of QEMU 7.2's
// QOM tree for a pseries VM: /machine/peripheral/<phb> is a
// spapr-pci-host-bridge whose root bus is /machine/peripheral/<phb>/<phb>.0,
// whose child[N] links name the devices on it; every host bridge's root bus
// is reported by query-pci as bus 0.
import test from 'ava';
import { FakeQmpCommandError, FakeQmpPeer, type FakeQmpCall } from '@vfiokit/testkit';
import { HotplugError } from '../errors';
import { connectQmp } from '../qmp/transport';
import { attachGroupToHostBridge, detachDevices, listHostBridges } from './index';

interface FakeDevice {
  driver: string;
  bus: string;
  devfn: number;
}

/** A pseries VM with host bridges phb1 (index 1) and phb2 (index 2) and the given devices. */
function fakePseries(peer: FakeQmpPeer, initial: Record<string, FakeDevice> = {}, failHost?: string): Map<string, FakeDevice> {
  const devices = new Map<string, FakeDevice>(Object.entries(initial));
  const phbs = new Map([['phb1', 1], ['phb2', 2]]);
  const onBus = (bus: string): string[] => [...devices].filter(([, d]) => d.bus === bus).map(([id]) => id);
  peer.handle('qom-list', ({ arguments: a }: FakeQmpCall) => {
    const path = String(a!.path);
    if (path === '/machine/peripheral') {
      return [
        { name: 'type', type: 'string' },
        ...[...phbs.keys()].map((p) => ({ name: p, type: 'child<spapr-pci-host-bridge>' })),
        ...[...devices].map(([id, d]) => ({ name: id, type: `child<${d.driver}>` })),
      ];
    }
    const m = /^\/machine\/peripheral\/(\w+)\/(\1\.0)$/.exec(path);
    if (m && phbs.has(m[1]!)) return onBus(m[2]!).map((_, i) => ({ name: `child[${i}]`, type: 'link<vfio-pci>' }));
    throw new FakeQmpCommandError('DeviceNotFound', `Device '${path}' not found`);
  });
  peer.handle('qom-get', ({ arguments: a }: FakeQmpCall) => {
    const path = String(a!.path);
    const prop = String(a!.property);
    const bus = /^\/machine\/peripheral\/(\w+)\/(\1\.0)$/.exec(path);
    if (bus) return `/machine/peripheral/${onBus(bus[2]!)[Number(/\d+/.exec(prop)![0])]}`;
    const id = path.slice('/machine/peripheral/'.length);
    if (phbs.has(id) && prop === 'index') return phbs.get(id);
    const d = devices.get(id);
    if (!d) throw new FakeQmpCommandError('DeviceNotFound', `Device '${path}' not found`);
    if (prop === 'realized') return true;
    if (prop === 'parent_bus') return `/machine/peripheral/${d.bus.slice(0, -2)}/${d.bus}`;
    if (prop === 'addr') return d.devfn;
    throw new FakeQmpCommandError('GenericError', `Property '${prop}' not found`);
  });
  peer.handle('query-pci', () =>
    [...phbs.keys()].map((phb) => ({
      bus: 0,
      devices: onBus(`${phb}.0`).map((id) => ({
        bus: 0, slot: devices.get(id)!.devfn >> 3, function: devices.get(id)!.devfn & 7, qdev_id: id,
        class_info: { class: 0x200 }, id: { vendor: 0x8086, device: 0x100e },
      })),
    })),
  );
  peer.handle('device_add', ({ arguments: a }: FakeQmpCall) => {
    if (a!.host === failHost) {
      throw new FakeQmpCommandError('GenericError', `vfio ${String(a!.host)}: group 9 is not viable`);
    }
    const [slot, fn] = String(a!.addr).split('.');
    devices.set(String(a!.id), { driver: String(a!.driver), bus: String(a!.bus), devfn: (Number(slot) << 3) | Number(fn) });
    return {};
  });
  peer.handle('device_del', ({ arguments: a, peer: p }: FakeQmpCall) => {
    const id = String(a!.id);
    const d = devices.get(id)!;
    // No guest has claimed the DR connectors: QEMU releases at once, every
    // function of the slot with function 0 (spapr_pci_unplug_request()).
    setTimeout(() => {
      for (const other of onBus(d.bus).filter((o) => devices.get(o)!.devfn >> 3 === d.devfn >> 3)) {
        devices.delete(other);
        p.emitEvent('DEVICE_DELETED', { device: other, path: `/machine/peripheral/${other}` });
      }
    }, 10);
    return {};
  });
  peer.handle('query-status', () => ({ status: 'prelaunch', running: false }));
  return devices;
}

test('listHostBridges reports each bridge with its index, root bus and used slots', async (t) => {
  const peer = await FakeQmpPeer.listen();
  fakePseries(peer, { nic: { driver: 'e1000', bus: 'phb2.0', devfn: 3 << 3 } });
  const qmp = await connectQmp(peer.address);
  t.deepEqual(await listHostBridges(qmp), [
    { id: 'phb1', index: 1, bus: 'phb1.0', occupiedSlots: [] },
    { id: 'phb2', index: 2, bus: 'phb2.0', occupiedSlots: [3] },
  ]);
  await qmp.close();
  await peer.close();
});

test('a two-function host slot goes into the lowest free bridge slot, function 0 last', async (t) => {
  const peer = await FakeQmpPeer.listen();
  fakePseries(peer, { nic: { driver: 'e1000', bus: 'phb1.0', devfn: 0 } });
  const qmp = await connectQmp(peer.address);
  const placed = await attachGroupToHostBridge(
    qmp,
    [
      { host: '0001:01:00.0', group: 3, id: 'gpu' },
      { host: '0001:01:00.1', group: 3, id: 'gpu-audio' },
    ],
    { hostBridge: 'phb1' },
  );
  t.deepEqual(placed, [
    { id: 'gpu-audio', hostBridge: 'phb1', slot: 1, function: 1 },
    { id: 'gpu', hostBridge: 'phb1', slot: 1, function: 0 },
  ]);
  t.deepEqual(
    peer.received.filter((r) => r.execute === 'device_add').map((r) => r.arguments),
    [
      { driver: 'vfio-pci', id: 'gpu-audio', host: '0001:01:00.1', bus: 'phb1.0', addr: '0x1.1' },
      { driver: 'vfio-pci', id: 'gpu', host: '0001:01:00.0', bus: 'phb1.0', addr: '0x1.0', multifunction: true },
    ],
  );
  await qmp.close();
  await peer.close();
});

test('a host bridge the VM does not have is refused before any device_add', async (t) => {
  const peer = await FakeQmpPeer.listen();
  fakePseries(peer);
  const qmp = await connectQmp(peer.address);
  const err = await t.throwsAsync(attachGroupToHostBridge(qmp, [{ host: '0001:01:00.0', group: 3, id: 'nic' }], { hostBridge: 'phb7' }), {
    instanceOf: HotplugError,
  });
  t.is(err!.code, 'HOTPLUG_INVALID_REQUEST');
  t.is(
    err!.message,
    'the VM has no spapr-pci-host-bridge with id phb7 (it has phb1, phb2); start it with -device spapr-pci-host-bridge,index=N,id=phb7 for the group\'s PE domain',
  );
  t.false(peer.received.some((r) => r.execute === 'device_add'));
  await qmp.close();
  await peer.close();
});

test('a host bridge with all 32 slots used fails with HOTPLUG_NO_FREE_SLOT', async (t) => {
  const peer = await FakeQmpPeer.listen();
  const full = Object.fromEntries([...Array(32).keys()].map((s) => [`d${s}`, { driver: 'e1000', bus: 'phb2.0', devfn: s << 3 }]));
  fakePseries(peer, full);
  const qmp = await connectQmp(peer.address);
  const err = await t.throwsAsync(attachGroupToHostBridge(qmp, [{ host: '0002:01:00.0', group: 4, id: 'nic' }], { hostBridge: 'phb2' }), {
    instanceOf: HotplugError,
  });
  t.is(err!.code, 'HOTPLUG_NO_FREE_SLOT');
  t.is(
    err!.message,
    'need 1 free slot(s) on host bridge phb2, found 0 of 32; detach devices from phb2 or give the PE domain another spapr-pci-host-bridge',
  );
  await qmp.close();
  await peer.close();
});

test('a failed device_add removes the functions added before it and names the cause', async (t) => {
  const peer = await FakeQmpPeer.listen();
  const devices = fakePseries(peer, {}, '0001:01:00.0');
  const qmp = await connectQmp(peer.address);
  const err = await t.throwsAsync(
    attachGroupToHostBridge(
      qmp,
      [
        { host: '0001:01:00.0', group: 9, id: 'gpu' },
        { host: '0001:01:00.1', group: 9, id: 'gpu-audio' },
      ],
      { hostBridge: 'phb1' },
    ),
    { instanceOf: HotplugError },
  );
  t.is(err!.code, 'HOTPLUG_FAILED');
  t.is(
    err!.message,
    'device_add of gpu on phb1 failed: vfio 0001:01:00.0: group 9 is not viable ' +
      '(bind every device of the IOMMU group to vfio-pci, or leave them unbound); devices added before it were removed',
  );
  t.deepEqual(err!.remaining, []);
  t.is(devices.size, 0);
  await qmp.close();
  await peer.close();
});

test('detach of a device on a host bridge ends when QEMU reports DEVICE_DELETED', async (t) => {
  const peer = await FakeQmpPeer.listen();
  const devices = fakePseries(peer);
  const qmp = await connectQmp(peer.address);
  await attachGroupToHostBridge(qmp, [{ host: '0002:01:00.0', group: 4, id: 'nic' }], { hostBridge: 'phb2' });
  await detachDevices(qmp, ['nic'], { timeoutMs: 5_000 });
  t.is(devices.size, 0);
  await qmp.close();
  await peer.close();
});
