// The host model on the real kernel (the lab's x86 guest: q35, emulated VT-d,
// edu devices; see packages/testkit/src/lab/README.md). Discovery must report
// what the kernel shows, the driver-core rules the fixture kernel models must
// hold here too, and managed bind/unbind must work and leave the guest as it
// found it. No mock here: these cases read and write the real /sys.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { labDevice, labTopology } from '@vfiokit/testkit/lab-guest';
import { bindGroup, groupHolders, unbindGroup } from './bind';
import { discoverHost, findDevice, findGroup } from './discover';
import { hasCapIpcLock } from './memlock';
import { findProtectedDevices } from './safety';
import { createHostFs, errnoOf, type HostFs } from './seam';
import { fileBindingStore } from './state';
import { checkViability } from './viability';

const host: HostFs = createHostFs();
const driverOf = (bdf: string) => findDevice(discoverHost(host), bdf).driver ?? null;
const overrideOf = (bdf: string) => host.readText(`/sys/bus/pci/devices/${bdf}/driver_override`)?.trim();
const freshStore = () => fileBindingStore(fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-state-')));

/** The errno a write answers, or 'ok'. */
function writeErrno(file: string, data: string): string {
  try {
    host.writeText(file, data);
    return 'ok';
  } catch (err) {
    return errnoOf(err) ?? String(err);
  }
}

/** The first pcie-pci-bridge of the topology (a PCIe-to-PCI bridge with no driver). */
const bridgeOfBridgeGroup = () => labDevice('bridge-a').groupBridges[0]!;

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'discovery reports every lab device with the driver the topology says',
    run: () => {
      const model = discoverHost(host);
      const t = labTopology();
      assert.deepEqual(
        t.devices.map((d) => [d.role, findDevice(model, d.bdf).driver ?? null]),
        t.devices.map((d) => [d.role, d.driver]),
      );
    },
  },
  {
    name: 'discovery groups every lab device with the devices and bridges the kernel grouped it with',
    run: () => {
      const model = discoverHost(host);
      const t = labTopology();
      for (const d of t.devices) {
        const group = findGroup(model, findDevice(model, d.bdf).iommuGroup!);
        const expected = [...d.groupWith.map((r) => labDevice(r).bdf), ...d.groupBridges].sort();
        assert.deepEqual(group.devices.map((x) => x.address), expected, `group of ${d.role}`);
        assert.deepEqual(fs.readdirSync(`/sys/kernel/iommu_groups/${group.id}/devices`).sort(), expected, `kernel's group of ${d.role}`);
      }
    },
  },
  {
    name: 'discovery sees an Intel VT-d IOMMU with groups',
    run: () => {
      const { iommu } = discoverHost(host);
      assert.deepEqual([iommu.present, iommu.kind], [true, 'intel-vtd']);
      assert.ok(iommu.units.length > 0 && iommu.units.every((u) => /^dmar\d+$/.test(u)), `units ${iommu.units.join(',')}`);
    },
  },
  {
    // QEMU's intel-iommu defaults to aw-bits=39, which is why the kernel's
    // type1 IOVA ranges end at 0x7fffffffff in this guest (lab-facts.md).
    name: "discovery reads the emulated VT-d's 39-bit input address width from MGAW",
    run: () => assert.equal(discoverHost(host).iommu.addressWidth, 39),
  },
  {
    name: "discovery reads the MSI window from every lab group's reserved_regions",
    run: () => {
      const model = discoverHost(host);
      for (const d of labTopology().devices) {
        const group = findGroup(model, findDevice(model, d.bdf).iommuGroup!);
        assert.ok(
          group.reservedRegions.some((r) => r.start === 0xfee00000n && r.size === 0x100000n && r.type === 'msi'),
          `group ${group.id} of ${d.role}: ${JSON.stringify(group.reservedRegions, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`,
        );
      }
    },
  },
  {
    name: 'discovery reads edu ids and sees the pcie-pci-bridge as a bridge in front of its devices',
    run: () => {
      const model = discoverHost(host);
      const solo = findDevice(model, labDevice('solo').bdf);
      assert.deepEqual([solo.vendorId, solo.deviceId, solo.isBridge], [0x1234, 0x11e8, false]);
      const bridge = findDevice(model, bridgeOfBridgeGroup());
      assert.deepEqual([bridge.isBridge, bridge.headerType, bridge.driver], [true, 'bridge', undefined]);
      assert.equal(findDevice(model, labDevice('bridge-a').bdf).upstream, bridge.address);
    },
  },
  {
    name: 'viability: a group with an unbound device is viable, a group with virtio-pci is not, naming it',
    run: () => {
      const model = discoverHost(host);
      const groupOf = (r: string) => findGroup(model, findDevice(model, labDevice(r).bdf).iommuGroup!);
      assert.equal(checkViability(model, groupOf('solo')).viable, true);
      assert.deepEqual(checkViability(model, groupOf('bridge-a')).blocking, []);
      assert.deepEqual(checkViability(model, groupOf('blocked')).blocking, [
        { address: labDevice('blocked-peer').bdf, driver: 'virtio-pci', fix: `vfiokit bind ${labDevice('blocked-peer').bdf}` },
      ]);
    },
  },
  {
    name: 'kernel rule: vfio-pci refuses a bridge with EINVAL on bind (as the fixture kernel models)',
    run: () => {
      const bridge = bridgeOfBridgeGroup();
      host.writeText(`/sys/bus/pci/devices/${bridge}/driver_override`, 'vfio-pci');
      try {
        assert.equal(writeErrno('/sys/bus/pci/drivers/vfio-pci/bind', bridge), 'EINVAL');
      } finally {
        host.writeText(`/sys/bus/pci/devices/${bridge}/driver_override`, '\n');
      }
      assert.deepEqual([driverOf(bridge), overrideOf(bridge)], [null, '(null)']);
    },
  },
  {
    name: 'kernel rule: drivers_probe hides the probe failure and leaves the bridge unbound',
    run: () => {
      const bridge = bridgeOfBridgeGroup();
      host.writeText(`/sys/bus/pci/devices/${bridge}/driver_override`, 'vfio-pci');
      try {
        assert.equal(writeErrno('/sys/bus/pci/drivers_probe', bridge), 'ok');
        assert.equal(driverOf(bridge), null);
      } finally {
        host.writeText(`/sys/bus/pci/devices/${bridge}/driver_override`, '\n');
      }
    },
  },
  {
    name: 'kernel rule: binding a device that has a driver is EBUSY',
    run: () => assert.equal(writeErrno('/sys/bus/pci/drivers/vfio-pci/bind', labDevice('solo').bdf), 'EBUSY'),
  },
  {
    name: 'kernel rule: unbinding from a driver the device is not bound to is ENODEV',
    run: () => assert.equal(writeErrno('/sys/bus/pci/drivers/virtio-pci/unbind', labDevice('solo').bdf), 'ENODEV'),
  },
  {
    name: 'kernel rule: binding a driver whose override does not name it is ENODEV',
    run: () => assert.equal(writeErrno('/sys/bus/pci/drivers/virtio-pci/bind', labDevice('bridge-b').bdf), 'ENODEV'),
  },
  {
    name: 'managed bind moves the unbound bridge-b to vfio-pci, and a managed release leaves it unbound again',
    run: () => {
      const store = freshStore();
      const b = labDevice('bridge-b').bdf;
      const bound = bindGroup(host, b, { store });
      assert.deepEqual(bound.changes, [{ address: b, to: 'vfio-pci' }]);
      assert.deepEqual([driverOf(b), overrideOf(b), driverOf(labDevice('bridge-a').bdf)], ['vfio-pci', 'vfio-pci', 'vfio-pci']);
      assert.equal(store.get(b)?.originalDriver, undefined);
      unbindGroup(host, b, { store, onlyRecorded: true });
      assert.deepEqual([driverOf(b), overrideOf(b), driverOf(labDevice('bridge-a').bdf)], [null, '(null)', 'vfio-pci']);
      assert.deepEqual(store.list(), []);
    },
  },
  {
    name: 'managed bind takes virtio-rng off virtio-pci, makes the group viable, and unbind gives it back',
    run: () => {
      const store = freshStore();
      const peer = labDevice('blocked-peer').bdf;
      bindGroup(host, peer, { store });
      try {
        assert.equal(driverOf(peer), 'vfio-pci');
        const model = discoverHost(host);
        assert.equal(checkViability(model, findGroup(model, findDevice(model, peer).iommuGroup!)).viable, true);
      } finally {
        unbindGroup(host, peer, { store, onlyRecorded: true });
      }
      assert.deepEqual([driverOf(peer), overrideOf(peer), driverOf(labDevice('blocked').bdf)], ['virtio-pci', '(null)', 'vfio-pci']);
    },
  },
  {
    name: 'binding a group that is all on vfio-pci already writes nothing',
    run: () => {
      const r = bindGroup(host, labDevice('mf-0').bdf, { store: freshStore() });
      assert.deepEqual([r.changes, r.steps], [[], []]);
    },
  },
  {
    name: 'releasing a group vfiokit did not bind leaves edu without a driver, and binding puts it back',
    run: () => {
      const store = freshStore();
      const solo = labDevice('solo').bdf;
      const released = unbindGroup(host, solo, { store });
      try {
        assert.deepEqual(released.releases, [{ address: solo, recorded: false }]);
        assert.deepEqual([driverOf(solo), overrideOf(solo)], [null, '(null)']);
      } finally {
        bindGroup(host, solo, { store });
      }
      assert.deepEqual([driverOf(solo), overrideOf(solo)], ['vfio-pci', 'vfio-pci']);
      assert.ok(fs.existsSync(`/dev/vfio/${findDevice(discoverHost(host), solo).iommuGroup}`));
    },
  },
  {
    name: 'safety rules protect the bridges and none of the edu devices',
    run: () => {
      const model = discoverHost(host);
      const edu = new Set(labTopology().devices.map((d) => d.bdf));
      const found = findProtectedDevices(host, model);
      assert.deepEqual(found.filter((f) => edu.has(f.address)), []);
      assert.ok(found.some((f) => f.address === bridgeOfBridgeGroup() && f.rule === 'bridge'));
    },
  },
  {
    name: 'a group this process holds open is listed as held, and its release is refused instead of hanging',
    run: () => {
      const solo = labDevice('solo').bdf;
      const group = findDevice(discoverHost(host), solo).iommuGroup!;
      const fd = fs.openSync(`/dev/vfio/${group}`, fs.constants.O_RDWR);
      try {
        assert.deepEqual(
          groupHolders(host, group).map((h) => h.pid),
          [process.pid],
        );
        assert.throws(() => unbindGroup(host, solo, { store: freshStore() }), { code: 'HOST_GROUP_IN_USE' });
      } finally {
        fs.closeSync(fd);
      }
      assert.deepEqual([groupHolders(host, group), driverOf(solo)], [[], 'vfio-pci']);
    },
  },
  {
    name: 'the lab process runs with CAP_IPC_LOCK, as root does',
    run: () => assert.equal(hasCapIpcLock(host), true),
  },
];
