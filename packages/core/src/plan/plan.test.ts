import { rmSync } from 'node:fs';
import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost, findProtectedDevices, type HostFs, type HostModel, type PciDevice, type SafetyFinding } from '../host/index';
import { planAssignment, PlanRefusedError, assertPlanOk } from './plan';
import type { GuestSpec } from './spec';

const GiB = 1n << 30n;

function host(name: string): { model: HostModel; protectedDevices: readonly SafetyFinding[] } {
  const h = createFixtureHost(name);
  try {
    const fs = h.fs as HostFs;
    const model = discoverHost(fs);
    return { model, protectedDevices: findProtectedDevices(fs, model) };
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
}

const workstation = host('workstation');
const power8 = host('power8');
const sriov = host('sriov-server');

function spec(over: Partial<GuestSpec>): GuestSpec {
  return { name: 'g', memoryBytes: 8n * GiB, cpus: 2, machine: 'q35', iommu: 'none', devices: [], ...over };
}

test('the GPU brings its audio function along as a companion on the same root port', (t) => {
  const plan = planAssignment(workstation.model, spec({ devices: [{ address: '0000:01:00.0' }] }), {
    protectedDevices: workstation.protectedDevices,
    force: ['console-display'],
  });
  t.true(plan.ok);
  t.deepEqual(
    plan.groups[0]!.functions.map((f) => [f.address, f.role]),
    [
      ['0000:01:00.0', 'requested'],
      ['0000:01:00.1', 'companion'],
    ],
  );
  t.deepEqual(plan.groups[0]!.hostBridges, ['0000:00:01.0']);
  t.is(plan.domains.length, 1);
  t.true(plan.domains[0]!.devices[0]!.multifunction);
  // The plan was forced, but bind checks the rules again: the action carries the same --force.
  t.deepEqual(plan.actions, ['vfiokit bind --force console-display 0000:01:00.0']);
});

test('the console GPU is refused without --force, naming the rule', (t) => {
  const plan = planAssignment(workstation.model, spec({ devices: [{ address: '0000:01:00.0' }] }), { protectedDevices: workstation.protectedDevices });
  t.false(plan.ok);
  const refusal = plan.findings.find((f) => f.kind === 'refusal')!;
  t.is(refusal.code, 'UNSAFE_DETACH');
  t.is(refusal.subject, '0000:01:00.0');
  t.is(refusal.fix, '--force console-display (only if the host can do without it)');
  t.throws(() => assertPlanOk(plan), { instanceOf: PlanRefusedError, message: /^guest g cannot be planned on this host: 0000:01:00\.0: it drives the boot console/ });
});

test('an address that is not on the host is refused naming the field', (t) => {
  const plan = planAssignment(workstation.model, spec({ devices: [{ address: '0000:04:00.0' }, { address: '0000:42:00.0' }] }));
  t.false(plan.ok);
  t.deepEqual(
    plan.findings.filter((f) => f.kind === 'refusal').map((f) => [f.code, f.subject, f.message]),
    [['DEVICE_NOT_FOUND', 'devices[1]', 'no PCI device 0000:42:00.0 on this host']],
  );
});

test('vendor:device with an index picks the n-th match in address order', (t) => {
  const plan = planAssignment(sriov.model, spec({ devices: [{ vendor: 0x8086, device: 0x154c, index: 2 }] }));
  const requested = plan.groups.flatMap((g) => g.functions).filter((f) => f.role === 'requested');
  const vfs = sriov.model.devices.filter((d) => d.vendorId === 0x8086 && d.deviceId === 0x154c).map((d) => d.address);
  t.deepEqual(requested.map((f) => f.address), [vfs[2]]);
});

test('an index past the last match is refused listing the matches', (t) => {
  const plan = planAssignment(workstation.model, spec({ devices: [{ vendor: 0x1b21, device: 0x2142, index: 1 }] }));
  t.is(
    plan.findings.find((f) => f.kind === 'refusal')!.message,
    '1b21:2142#1 asks for match 1 (from 0) but the host has 1 device(s) with IDs 1b21:2142: 0000:04:00.0',
  );
});

test('a guest IOMMU gives each group its own container, pinning RAM once per group', (t) => {
  const plan = planAssignment(sriov.model, spec({ iommu: 'intel-iommu', devices: [{ vendor: 0x8086, device: 0x154c, index: 0 }, { vendor: 0x8086, device: 0x154c, index: 1 }] }));
  t.true(plan.ok);
  t.is(plan.dma.policy, 'shadow');
  t.is(plan.dma.topology.containers.length, 2);
  t.is(plan.dma.topology.pinnedBytes, 16n * GiB);
});

test('pinned memory over RLIMIT_MEMLOCK is a refusal', (t) => {
  const plan = planAssignment(workstation.model, spec({ devices: [{ address: '0000:04:00.0' }] }), { memlock: { soft: 64n << 20n } });
  t.false(plan.ok);
  t.is(plan.findings.find((f) => f.kind === 'refusal')!.code, 'COMPAT_MEMLOCK');
});

test('a pseries guest on POWER8 gets one PHB per PE, each with a 32-bit and a guest-made 64-bit window', (t) => {
  const plan = planAssignment(power8.model, spec({ machine: 'pseries', iommu: 'spapr-tce', devices: [{ address: '0002:01:00.0' }, { address: '0003:01:00.0' }] }));
  t.deepEqual(plan.domains.map((d) => (d.kind === 'spapr-pci-host-bridge' ? [d.bridge.id, d.group] : [])), [
    ['phb1', 2],
    ['phb2', 3],
  ]);
  t.is(plan.dma.policy, 'spapr-tce');
  t.deepEqual(
    plan.dma.tceWindows!.map((w) => w.windows.map((x) => [x.index, x.start, x.size, x.createdBy])),
    [
      [
        [0, 0n, GiB, 'machine'],
        [1, 0x800000000000000n, 8n * GiB, 'guest'],
      ],
      [
        [0, 0n, GiB, 'machine'],
        [1, 0x800000000000000n, 8n * GiB, 'guest'],
      ],
    ],
  );
});

test('a q35 guest on a POWER host is refused', (t) => {
  const plan = planAssignment(power8.model, spec({ devices: [{ address: '0002:01:00.0' }] }));
  t.is(plan.findings.find((f) => f.kind === 'refusal')!.code, 'MACHINE_PLATFORM');
});

test('a host without an IOMMU is refused with the fix', (t) => {
  const plan = planAssignment(host('no-iommu').model, spec({ devices: [{ address: '0000:00:17.0' }] }));
  t.deepEqual(plan.findings.filter((f) => f.kind === 'refusal').map((f) => f.code), ['NO_IOMMU']);
});

test('a viable group with a function on no driver still needs bind, since QEMU opens it through vfio-pci', (t) => {
  const bridge = host('bridge-group');
  // Group 2 as a half-finished manual bind leaves it: two cards on vfio-pci, the serial card on none.
  const onVfio = (d: PciDevice): PciDevice => (d.address === '0000:02:00.0' || d.address === '0000:02:01.0' ? { ...d, driver: 'vfio-pci' } : d);
  const model: HostModel = {
    ...bridge.model,
    devices: bridge.model.devices.map(onVfio),
    groups: bridge.model.groups.map((g) => ({ ...g, devices: g.devices.map(onVfio) })),
  };
  const plan = planAssignment(model, spec({ devices: [{ address: '0000:02:00.0' }] }), { protectedDevices: bridge.protectedDevices, memlock: { soft: 'unlimited' } });
  t.true(plan.groups[0]!.viable);
  t.deepEqual(
    plan.findings.filter((f) => f.kind === 'action').map((f) => [f.code, f.message]),
    [['GROUP_NOT_BOUND', '0000:02:02.0 is not bound to any driver; QEMU opens each assigned function through vfio-pci']],
  );
  t.deepEqual(plan.actions, ['vfiokit bind 0000:02:00.0']);
});

test("an SR-IOV physical function with VFs enabled is refused with host's reason and fix", (t) => {
  const plan = planAssignment(sriov.model, spec({ devices: [{ address: '0000:3b:00.0' }] }), { memlock: { soft: 'unlimited' } });
  t.false(plan.ok);
  const refusal = plan.findings.find((f) => f.kind === 'refusal')!;
  t.is(refusal.code, 'SRIOV_ENABLED');
  t.is(refusal.fix, 'disable them first (echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs), or assign a VF instead');
});

const amd = host('amd-server');
const noIr = host('no-interrupt-remapping');
const arm = host('arm64-server');

test('on AMD-Vi a guest whose RAM above 4 GiB reaches the HyperTransport hole is refused before anything is mapped, naming the hole and the fix', (t) => {
  const plan = planAssignment(amd.model, spec({ memoryBytes: 1100n * GiB, devices: [{ address: '0000:03:00.1' }] }), { protectedDevices: amd.protectedDevices });
  t.false(plan.ok);
  const f = plan.findings.find((x) => x.code === 'COMPAT_RAM_OUTSIDE_HOST');
  t.truthy(f);
  t.is(f!.kind, 'refusal');
  t.regex(f!.message, /ram-above-4g .* collides with group 7's reserved reserved region 0xfd00000000-0xffffffffff, AMD-Vi's HyperTransport hole/);
  t.regex(f!.fix!, /less RAM .* at most 1010 GiB in all.*above 4 GiB at 1 TiB/);
});

test('on AMD-Vi a guest whose RAM ends below the hole plans without a collision', (t) => {
  const plan = planAssignment(amd.model, spec({ memoryBytes: 64n * GiB, devices: [{ address: '0000:03:00.1' }] }), { protectedDevices: amd.protectedDevices });
  t.false(plan.findings.some((x) => x.code === 'COMPAT_RAM_OUTSIDE_HOST'));
});

test('a host without interrupt remapping refuses the plan, with both fixes stated', (t) => {
  const plan = planAssignment(noIr.model, spec({ devices: [{ address: '0000:02:00.0' }] }), { protectedDevices: noIr.protectedDevices });
  t.false(plan.ok);
  const f = plan.findings.find((x) => x.code === 'NO_MSI_ISOLATION')!;
  t.is(f.kind, 'refusal');
  t.regex(f.message, /^no interrupt remapping/);
  t.regex(f.fix!, /interrupt remapping in the firmware.*; or load vfio_iommu_type1 with allow_unsafe_interrupts=1/);
});

test('with allow_unsafe_interrupts on, the plan goes ahead with a warning about forged MSIs', (t) => {
  const model = { ...noIr.model, iommu: { ...noIr.model.iommu, msiIsolation: { ...noIr.model.iommu.msiIsolation, allowUnsafeInterrupts: true } } };
  const plan = planAssignment(model, spec({ devices: [{ address: '0000:02:00.0' }] }), { protectedDevices: noIr.protectedDevices });
  t.false(plan.findings.some((x) => x.code === 'NO_MSI_ISOLATION'));
  t.regex(plan.findings.find((x) => x.code === 'UNSAFE_INTERRUPTS')!.message, /forge MSIs/);
});

test("on an SMMUv3 host a q35 guest's RAM from 0 covers the MSI doorbell and the plan names it", (t) => {
  const plan = planAssignment(arm.model, spec({ devices: [{ address: '0004:01:00.0' }] }), { protectedDevices: arm.protectedDevices });
  t.false(plan.ok);
  const f = plan.findings.find((x) => x.code === 'COMPAT_RAM_OUTSIDE_HOST')!;
  t.regex(f.message, /ram-below-4g .* 0x8000000-0x80fffff, the SMMU's MSI doorbell window/);
  t.regex(f.fix!, /RAM starts above 0x80fffff/);
  t.false(plan.findings.some((x) => x.code === 'NO_MSI_ISOLATION'));
});
