import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost, findGroup } from './discover';
import type { HostModel, PciDevice } from './model';
import { findProtectedDevices } from './safety';
import { allowsViability, assertViable, checkViability, describeViability, viabilityRuleFor } from './viability';

const model = (name: string) => discoverHost(createFixtureHost(name).fs);
const withKernel = (m: HostModel, kernelRelease: string): HostModel => ({ ...m, kernelRelease });

test('a group whose devices are on snd_hda_intel and nouveau is not viable', (t) => {
  const m = model('workstation');
  t.deepEqual(checkViability(m, findGroup(m, 1)).blocking, [
    { address: '0000:01:00.0', driver: 'nouveau', fix: 'vfiokit bind 0000:01:00.0' },
    { address: '0000:01:00.1', driver: 'snd_hda_intel', fix: 'vfiokit bind 0000:01:00.1' },
  ]);
});

test('an SR-IOV PF with VFs enabled has disabling its VFs as the fix, not a bind that would refuse it', (t) => {
  const m = model('sriov-server');
  t.deepEqual(checkViability(m, findGroup(m, 2)).blocking, [
    {
      address: '0000:3b:00.0',
      driver: 'i40e',
      fix: 'echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs',
      bindRefused:
        '0000:3b:00.0 is an SR-IOV physical function with 4 VFs enabled: moving it off i40e would tear them down, and vfio-pci refuses a PF whose VFs remain; disable them first (echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs), or assign a VF instead',
    },
  ]);
});

test('the viability sentence of an SR-IOV PF with VFs enabled says bind would refuse it and why', (t) => {
  const m = model('sriov-server');
  t.is(
    describeViability(checkViability(m, findGroup(m, 2))),
    "group 2 is not viable: 0000:3b:00.0 is bound to i40e; 'vfiokit bind' would refuse it: 0000:3b:00.0 is an SR-IOV physical function with 4 VFs enabled: moving it off i40e would tear them down, and vfio-pci refuses a PF whose VFs remain; disable them first (echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs), or assign a VF instead",
  );
});

test('a root port on pcieport does not block its group (driver_managed_dma)', (t) => {
  const m = model('workstation');
  t.deepEqual(checkViability(m, findGroup(m, 1)).bystanders, ['0000:00:01.0']);
});

test('a group of one device with no driver is viable', (t) => {
  const m = model('power8');
  t.true(checkViability(m, findGroup(m, 2)).viable);
});

test('a bridge without a driver and an unbound card leave the bridge group blocked only by the driven cards', (t) => {
  const m = model('bridge-group');
  t.deepEqual(
    checkViability(m, findGroup(m, 2)).blocking.map((b) => b.address),
    ['0000:02:00.0', '0000:02:01.0'],
  );
});

test('the not-viable error names each blocking device, its driver and the fix', (t) => {
  const m = model('workstation');
  const err = t.throws(() => assertViable(m, findGroup(m, 1)));
  t.is(
    err?.message,
    "group 1 is not viable: 0000:01:00.0 is bound to nouveau, 0000:01:00.1 is bound to snd_hda_intel; run 'vfiokit bind 0000:01:00.0' to move the whole group to vfio-pci",
  );
});

test('the not-viable error has code HOST_GROUP_NOT_VIABLE and a bind hint', (t) => {
  const m = model('workstation');
  const err = t.throws(() => assertViable(m, findGroup(m, 1))) as { code?: string; hint?: string };
  t.deepEqual([err.code, err.hint], ['HOST_GROUP_NOT_VIABLE', 'vfiokit bind 0000:01:00.0']);
});

test('kernels from 5.19 on decide by DMA ownership', (t) => {
  t.deepEqual([viabilityRuleFor('5.19.0'), viabilityRuleFor('6.1.0-27-amd64'), viabilityRuleFor(undefined)], ['dma-owner', 'dma-owner', 'dma-owner']);
});

test('kernels before 5.19 decide by the driver allow-list', (t) => {
  t.is(viabilityRuleFor('5.15.0-91-generic'), 'driver-allowlist');
});

const bridgeOn = (driver: string): PciDevice =>
  ({ address: '0000:01:00.0', driver, headerType: 'bridge', isBridge: true }) as PciDevice;

test('before 5.19 a bridge with any driver is allowed (vfio_dev_driver_allowed)', (t) => {
  t.true(allowsViability(bridgeOn('shpchp'), 'driver-allowlist'));
});

test('from 5.19 a bridge on a DMA-using driver blocks its group', (t) => {
  t.false(allowsViability(bridgeOn('shpchp'), 'dma-owner'));
});

test('pci-stub leaves a group viable under both rules', (t) => {
  const d = { address: '0000:01:00.0', driver: 'pci-stub', headerType: 'normal', isBridge: false } as PciDevice;
  t.deepEqual([allowsViability(d, 'dma-owner'), allowsViability(d, 'driver-allowlist')], [true, true]);
});

test('a root port on pcieport leaves its group viable on a pre-5.19 kernel too (not a type 0 header)', (t) => {
  const m = model('workstation');
  t.true(checkViability(withKernel(m, '5.4.0'), findGroup(m, 5)).viable);
});

test('the report names the rule the kernel applies', (t) => {
  const m = model('workstation');
  t.is(checkViability(withKernel(m, '5.4.0'), findGroup(m, 5)).rule, 'driver-allowlist');
});

test('a platform device on a driver in the group blocks it, with the unbind that frees it', (t) => {
  const host = createFixtureHost('workstation');
  // An ARM-style non-PCI member of group 11, on a DMA-using platform driver.
  const dev = path.join(host.root, 'sys/devices/platform/soc/a000000.dma');
  fs.mkdirSync(dev, { recursive: true });
  fs.mkdirSync(path.join(host.root, 'sys/bus/platform/drivers/pl330'), { recursive: true });
  fs.symlinkSync('../../../../bus/platform/drivers/pl330', path.join(dev, 'driver'));
  fs.symlinkSync('../../../../bus/platform', path.join(dev, 'subsystem'));
  fs.symlinkSync('../../../../devices/platform/soc/a000000.dma', path.join(host.root, 'sys/kernel/iommu_groups/11/devices/a000000.dma'));
  const m = discoverHost(host.fs);
  t.deepEqual(checkViability(m, findGroup(m, 11)).blocking.at(-1), {
    address: 'a000000.dma',
    driver: 'pl330',
    fix: 'echo a000000.dma > /sys/bus/platform/drivers/pl330/unbind',
  });
});

test("a blocking device a safety rule protects gets a fix with that rule's --force, never a bind that is refused", (t) => {
  const host = createFixtureHost('workstation');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  const m = discoverHost(host.fs);
  const report = checkViability(m, findGroup(m, 1), findProtectedDevices(host.fs, m));
  t.deepEqual(
    report.blocking.map((b) => b.fix),
    ['vfiokit bind --force console-display 0000:01:00.0', 'vfiokit bind --force console-display 0000:01:00.1'],
  );
  t.regex(describeViability(report), /run 'vfiokit bind --force console-display 0000:01:00\.0' to move the whole group to vfio-pci, waiving a safety rule/);
});
