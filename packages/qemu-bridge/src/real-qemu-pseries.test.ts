// Against a real qemu-system-ppc64 (Debian's qemu-system-ppc) with a pseries
// machine and no guest OS: what QEMU itself answers about hot-plug into an
// spapr-pci-host-bridge, not a model of it.
import test from 'ava';
import { qemuAvailable } from '@vfiokit/testkit';
import { flattenPci, queryPci } from './commands/queries';
import { HotplugError } from './errors';
import { attachGroupToHostBridge, attachSlotsToHostBridge, detachDevices, listHostBridges } from './hotplug/index';
import type { QmpSession } from './qmp/protocol';
import { withTestQemu } from './test-support/real-qemu';

const PPC64 = 'qemu-system-ppc64';
const PHB1 = ['-device', 'spapr-pci-host-bridge,index=1,id=phb1'];

function withPseries(running: boolean, body: (qmp: QmpSession) => Promise<void>): Promise<void> {
  return withTestQemu({ binary: PPC64, machine: 'pseries', memory: '512M', args: PHB1, running }, body);
}

const e1000 = (id: string) => [[{ id, driver: 'e1000', properties: {}, guestFunction: 0 }]];

test.before('qemu-system-ppc64 is installed (Debian package qemu-system-ppc)', (t) => {
  t.true(qemuAvailable(PPC64), 'install qemu-system-ppc to run these tests');
});

test.serial('an e1000 hot-plugged into a pseries host bridge sits in its slot 0, seen by QOM and query-pci', async (t) => {
  await withPseries(false, async (qmp) => {
    t.deepEqual(await listHostBridges(qmp), [{ id: 'phb1', index: 1, bus: 'phb1.0', occupiedSlots: [] }]);
    const placed = await attachSlotsToHostBridge(qmp, e1000('n0'), { hostBridge: 'phb1' });
    t.deepEqual(placed, [{ id: 'n0', hostBridge: 'phb1', slot: 0, function: 0 }]);
    const seen = flattenPci(await queryPci(qmp)).find((d) => d.qdevId === 'n0');
    t.deepEqual([seen?.bus, seen?.slot, seen?.function, seen?.vendorId, seen?.deviceId], [0, 0, 0, 0x8086, 0x100e]);
    t.deepEqual((await listHostBridges(qmp))[0]!.occupiedSlots, [0]);
  });
});

test.serial('a second hot-plug into the same host bridge takes the next free slot', async (t) => {
  await withPseries(false, async (qmp) => {
    await attachSlotsToHostBridge(qmp, e1000('n0'), { hostBridge: 'phb1' });
    t.deepEqual(await attachSlotsToHostBridge(qmp, e1000('n1'), { hostBridge: 'phb1' }), [
      { id: 'n1', hostBridge: 'phb1', slot: 1, function: 0 },
    ]);
  });
});

// Unlike q35, a pseries unplug needs no guest while no guest has taken the
// device: its DR connector is still in its empty (unusable) state, so QEMU
// releases it at once and emits DEVICE_DELETED (spapr_drc_unplug_request()).
test.serial('without a guest, unplug from a stopped pseries VM completes at once', async (t) => {
  await withPseries(false, async (qmp) => {
    await attachSlotsToHostBridge(qmp, e1000('n0'), { hostBridge: 'phb1' });
    await detachDevices(qmp, ['n0'], { timeoutMs: 5_000 });
    t.deepEqual((await listHostBridges(qmp))[0]!.occupiedSlots, []);
  });
});

// Running (TCG, firmware only), the DR connector still releases the device
// at once, so it leaves QOM, but DEVICE_DELETED, sent from device_finalize(),
// does not come while the vCPU runs; a QMP stop lets it come.
test.serial('without a guest OS, unplug from a running pseries VM ends in UNPLUG_NOT_ACKNOWLEDGED though the device left QOM', async (t) => {
  await withPseries(true, async (qmp) => {
    await attachSlotsToHostBridge(qmp, e1000('n0'), { hostBridge: 'phb1' });
    const err = await t.throwsAsync(detachDevices(qmp, ['n0'], { timeoutMs: 3_000 }), { instanceOf: HotplugError });
    t.is(err!.code, 'UNPLUG_NOT_ACKNOWLEDGED');
    t.deepEqual(err!.remaining, ['n0']);
    t.is(
      err!.message,
      "n0 has left the VM's device tree, but QEMU sent no DEVICE_DELETED within 3000 ms: it sends it only once the " +
        'device is freed (device_finalize()), and until then the host device stays open. Stop the VM (QMP stop) to let ' +
        'QEMU finish, or wait longer.',
    );
    t.deepEqual((await listHostBridges(qmp))[0]!.occupiedSlots, []);
  });
});

test.serial('stopping a running pseries VM lets the pending DEVICE_DELETED of an unplugged device come', async (t) => {
  await withPseries(true, async (qmp) => {
    await attachSlotsToHostBridge(qmp, e1000('n0'), { hostBridge: 'phb1' });
    await t.throwsAsync(detachDevices(qmp, ['n0'], { timeoutMs: 2_000 }), { instanceOf: HotplugError });
    const deleted = qmp.waitForEvent('DEVICE_DELETED', (e) => e.data.device === 'n0', 10_000);
    await qmp.execute('stop');
    t.is((await deleted.promise).data.path, '/machine/peripheral/n0');
  });
});

test.serial('device_add vfio-pci of an absent host device on a host bridge fails with QEMU\'s error and leaves nothing', async (t) => {
  await withPseries(false, async (qmp) => {
    const err = await t.throwsAsync(attachGroupToHostBridge(qmp, [{ host: '0000:99:00.0', group: 99, id: 'gone' }], { hostBridge: 'phb1' }), {
      instanceOf: HotplugError,
    });
    t.is(err!.code, 'HOTPLUG_FAILED');
    t.is(
      err!.message,
      'device_add of gone on phb1 failed: vfio /sys/bus/pci/devices/0000:99:00.0: no such host device: No such file or directory ' +
        '(the host has no PCI device at that address; check lspci -D)',
    );
    t.deepEqual((await listHostBridges(qmp))[0]!.occupiedSlots, []);
  });
});
