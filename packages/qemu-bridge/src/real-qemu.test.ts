// Against a real qemu-system-x86_64 (Debian's qemu-system-x86), started
// stopped (-S) with no guest: what QEMU itself answers, not a model of it.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuAvailable, startTestQemu, type TestQemu } from '@vfiokit/testkit';
import { buildCommandLine, requirementsFor } from './cmdline/builder';
import { deviceAdd, flattenPci, queryPci, queryStatus, queryVersion } from './commands/queries';
import { DeviceType, missingCapabilities, probeCapabilities } from './commands/probe';
import { HotplugError, QemuLaunchError, QmpCommandError, QmpDisconnectedError, type QemuBridgeError } from './errors';
import { launchQemu } from './process/index';
import { attachGroup, attachSlots, detachDevices, listRootPorts } from './hotplug/index';
import { readGuestMemoryLayout } from './memory/index';
import type { QmpSession } from './qmp/protocol';
import { connectQmp } from './qmp/transport';
import { connectWhenListening, withTestQemu } from './test-support/real-qemu';

const ROOT_PORTS = [
  '-device', 'pcie-root-port,id=rp1,chassis=1,bus=pcie.0,addr=0x2',
  '-device', 'pcie-root-port,id=rp2,chassis=2,bus=pcie.0,addr=0x3',
];

function withQemu(args: readonly string[], body: (qmp: QmpSession, qemu: TestQemu) => Promise<void>, memory?: string): Promise<void> {
  return withTestQemu({ args, memory }, body);
}

test.before('qemu-system-x86_64 is installed (Debian package qemu-system-x86)', (t) => {
  t.true(qemuAvailable(), 'install qemu-system-x86 to run these tests');
});

test.serial('negotiation with a real QEMU enables oob and query-version agrees with the greeting', async (t) => {
  await withQemu([], async (qmp) => {
    t.true(qmp.oobEnabled);
    const v = await queryVersion(qmp);
    t.deepEqual({ ...v }, { ...qmp.greeting.version });
    t.deepEqual(await queryStatus(qmp), { status: 'prelaunch', running: false });
  });
});

test.serial('query-pci lists the root ports with their ids but nothing behind them before firmware numbers the buses', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const ports = flattenPci(await queryPci(qmp)).filter((d) => d.qdevId.startsWith('rp'));
    t.deepEqual(
      ports.map((d) => [d.qdevId, d.slot, d.classCode, d.vendorId, d.deviceId, d.bridge?.secondary]),
      [
        ['rp1', 2, 0x0604, 0x1b36, 0x000c, 0],
        ['rp2', 3, 0x0604, 0x1b36, 0x000c, 0],
      ],
    );
  });
});

test.serial('hot-plug into pcie.0 fails with QEMU\'s own error', async (t) => {
  await withQemu([], async (qmp) => {
    const err = await t.throwsAsync(deviceAdd(qmp, 'e1000e', 'n0', { bus: 'pcie.0' }), { instanceOf: QmpCommandError });
    t.is(err!.desc, "Bus 'pcie.0' does not support hotplugging");
  });
});

test.serial('an e1000e hot-plugs into the first free root port and QOM shows it there', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const placed = await attachSlots(qmp, [[{ id: 'nic0', driver: 'e1000e', properties: {}, guestFunction: 0 }]]);
    t.deepEqual(placed, [{ id: 'nic0', rootPort: 'rp1', function: 0, guestVisible: false }]);
    const ports = await listRootPorts(qmp);
    t.deepEqual(
      ports.map((p) => [p.id, p.type, p.hotplug, p.occupants]),
      [
        ['rp1', 'pcie-root-port', true, ['/machine/peripheral/nic0']],
        ['rp2', 'pcie-root-port', true, []],
      ],
    );
  });
});

test.serial('two functions of one device hot-plug into one root port, function 0 last', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const placed = await attachSlots(qmp, [
      [
        { id: 'f0', driver: 'e1000e', properties: {}, guestFunction: 0 },
        { id: 'f1', driver: 'e1000e', properties: {}, guestFunction: 1 },
      ],
    ]);
    t.deepEqual(
      placed.map((p) => [p.id, p.rootPort, p.function]),
      [
        ['f1', 'rp1', 1],
        ['f0', 'rp1', 0],
      ],
    );
  });
});

test.serial('an unplug without a running guest ends in UNPLUG_NOT_ACKNOWLEDGED and the device stays', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    await attachSlots(qmp, [[{ id: 'nic0', driver: 'e1000e', properties: {}, guestFunction: 0 }]]);
    const started = Date.now();
    const err = await t.throwsAsync(detachDevices(qmp, ['nic0'], { timeoutMs: 300 }), { instanceOf: HotplugError });
    t.true(Date.now() - started < 5_000);
    t.is(err!.code, 'UNPLUG_NOT_ACKNOWLEDGED');
    t.deepEqual(err!.remaining, ['nic0']);
    t.regex(err!.message, /The VM is not running \(status prelaunch\), so no guest can answer/);
    t.deepEqual((await listRootPorts(qmp)).find((p) => p.id === 'rp1')!.occupants, ['/machine/peripheral/nic0']);
    // A second attempt finds the first request still pending and waits again.
    const again = await t.throwsAsync(detachDevices(qmp, ['nic0'], { timeoutMs: 100 }), { instanceOf: HotplugError });
    t.is(again!.code, 'UNPLUG_NOT_ACKNOWLEDGED');
  });
});

test.serial('device_add vfio-pci of a device the host does not have fails with QEMU\'s error and leaves the port free', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const err = await t.throwsAsync(attachGroup(qmp, [{ host: '0000:99:00.0', group: 7, id: 'hostdev0' }]), {
      instanceOf: HotplugError,
    });
    t.is(err!.code, 'HOTPLUG_FAILED');
    t.is(
      err!.message,
      'device_add of hostdev0 failed: vfio /sys/bus/pci/devices/0000:99:00.0: no such host device: No such file or directory' +
        ' (the host has no PCI device at that address; check lspci -D)',
    );
    t.deepEqual(err!.remaining, []);
    t.true((await listRootPorts(qmp)).every((p) => p.occupants.length === 0));
  });
});

test.serial('attaching more slots than free root ports fails before touching the VM', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const err = await t.throwsAsync(
      attachGroup(qmp, [
        { host: '0000:01:00.0', group: 1 },
        { host: '0000:02:00.0', group: 1 },
        { host: '0000:03:00.0', group: 1 },
      ]),
      { instanceOf: HotplugError },
    );
    t.is(err!.code, 'HOTPLUG_NO_FREE_SLOT');
    t.regex(err!.message, /^need 3 free hot-pluggable PCIe root port\(s\), found 2 \(rp1, rp2\)/);
  });
});

test.serial('the capability probe finds vfio-pci, both vIOMMUs and no sPAPR bridge in qemu-system-x86_64', async (t) => {
  await withQemu([], async (qmp) => {
    const caps = await probeCapabilities(qmp);
    t.true(caps.deviceTypes.has(DeviceType.vfioPci));
    t.true(caps.deviceTypes.has(DeviceType.intelIommu));
    t.true(caps.deviceTypes.has(DeviceType.virtioIommu));
    t.true(caps.deviceTypes.has(DeviceType.pcieRootPort));
    t.false(caps.deviceTypes.has(DeviceType.spaprPciHostBridge));
    t.true(caps.vfioPciProperties.has('host'));
    t.true(caps.vfioPciProperties.has('sysfsdev'));
    t.true(caps.commands.has('device_add'));
    t.true(caps.events.has('DEVICE_DELETED'));
    t.true(caps.oobCommands.has('migrate-pause'));
    t.false(caps.oobCommands.has('query-status'));
    t.true(caps.deviceProperties.get(DeviceType.intelIommu)!.has('caching-mode'));
    const vm = { machine: 'q35' as const, memoryMiB: 128, cpus: 1, guestIommu: 'intel-iommu' as const, devices: [{ host: '01:00.0', group: 1 }] };
    t.deepEqual(missingCapabilities(caps, requirementsFor(vm)), []);
    t.deepEqual(missingCapabilities(caps, requirementsFor({ ...vm, machine: 'pseries', guestIommu: 'none' })), ['device type spapr-pci-host-bridge']);
  });
});

test.serial('guest RAM of 128 MiB on q35 is one region below 4 GiB', async (t) => {
  await withQemu([], async (qmp) => {
    t.deepEqual(await readGuestMemoryLayout(qmp), {
      regions: [{ name: 'ram-below-4g', gpa: 0n, size: 128n << 20n, source: 'boot' }],
    });
  });
});

test.serial('guest RAM of 3 GiB on q35 splits at 2 GiB, the rest from 4 GiB', async (t) => {
  await withQemu(
    [],
    async (qmp) => {
      t.deepEqual(await readGuestMemoryLayout(qmp), {
        regions: [
          { name: 'ram-below-4g', gpa: 0n, size: 2n << 30n, source: 'boot' },
          { name: 'ram-above-4g', gpa: 4n << 30n, size: 1n << 30n, source: 'boot' },
        ],
      });
    },
    '3G',
  );
});

test.serial('a cold-plugged DIMM appears as a hotplug region at the address QEMU chose', async (t) => {
  await withQemu(
    ['-object', 'memory-backend-ram,id=mem1,size=128M', '-device', 'pc-dimm,id=dimm1,memdev=mem1'],
    async (qmp) => {
      const layout = await readGuestMemoryLayout(qmp);
      t.deepEqual(layout.regions.map((r) => [r.name, r.gpa, r.size, r.source]), [
        ['ram-below-4g', 0n, 128n << 20n, 'boot'],
        ['dimm1', 4n << 30n, 128n << 20n, 'hotplug'],
      ]);
    },
    '128M,slots=2,maxmem=1G',
  );
});

test.serial('a command line built for q35 with intel-iommu and spare ports starts QEMU with the ports in place', async (t) => {
  const cl = buildCommandLine({ machine: 'q35', memoryMiB: 128, cpus: 1, guestIommu: 'intel-iommu', devices: [], accel: 'tcg', spareRootPorts: 3 });
  // Drop the binary; startTestQemu adds -machine q35 itself, and a later -machine merges.
  await withQemu(cl.argv.slice(1).filter((a) => a !== '-nodefaults'), async (qmp) => {
    const ports = await listRootPorts(qmp);
    t.deepEqual(ports.map((p) => p.id), ['rp0', 'rp1', 'rp2']);
    const pci = flattenPci(await queryPci(qmp)).filter((d) => d.qdevId.startsWith('rp'));
    t.deepEqual(pci.map((d) => [d.qdevId, d.slot, d.function]), [
      ['rp0', 2, 0],
      ['rp1', 2, 1],
      ['rp2', 2, 2],
    ]);
  });
});

test.serial('a command to a frozen QEMU times out, and its exit then ends the session with reason peer-closed', async (t) => {
  const qemu = await startTestQemu();
  const qmp = await connectWhenListening(qemu).catch(async (err: unknown) => {
    await qemu.stop();
    throw err;
  });
  try {
    process.kill(qemu.pid, 'SIGSTOP');
    const timedOut = await t.throwsAsync<QemuBridgeError>(qmp.execute('query-status', undefined, { timeoutMs: 200 }));
    t.is(timedOut?.code, 'QMP_TIMEOUT');
    const pending = qmp.execute('query-status');
    process.kill(qemu.pid, 'SIGKILL');
    const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
    t.is(err?.reason, 'peer-closed');
  } finally {
    // A stopped process ignores SIGTERM until continued: make sure it dies.
    try {
      process.kill(qemu.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await qmp.close();
    await qemu.stop();
  }
});

test.serial('a command line built for q35 with virtio-iommu starts QEMU with the IOMMU at 00:01.0', async (t) => {
  const cl = buildCommandLine({ machine: 'q35', memoryMiB: 128, cpus: 1, guestIommu: 'virtio-iommu', devices: [], accel: 'tcg', spareRootPorts: 1 });
  await withQemu(cl.argv.slice(1).filter((a) => a !== '-nodefaults'), async (qmp) => {
    const pci = flattenPci(await queryPci(qmp));
    const iommu = pci.find((d) => d.vendorId === 0x1af4 && d.deviceId === 0x1057);
    t.deepEqual(iommu && [iommu.slot, iommu.function], [1, 0]);
  });
});

function tempSocket(): { path: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-bridge-test-'));
  return { path: join(dir, 'qmp.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test.serial('launchQemu runs a built command line and hands back a negotiated session', async (t) => {
  const sock = tempSocket();
  const cl = buildCommandLine({
    machine: 'q35', memoryMiB: 128, cpus: 1, guestIommu: 'none', devices: [], accel: 'tcg', spareRootPorts: 1,
    qmp: { path: sock.path }, extraArgs: ['-S', '-display', 'none'],
  });
  const vm = await launchQemu(cl.argv, { path: sock.path });
  try {
    t.deepEqual(await queryStatus(vm.qmp), { status: 'prelaunch', running: false });
    t.deepEqual((await listRootPorts(vm.qmp)).map((p) => p.id), ['rp0']);
  } finally {
    await vm.stop();
    sock.cleanup();
  }
  t.is(await vm.exited, 0);
});

test.serial('launchQemu of a cold-plugged vfio-pci the host lacks fails with QEMU\'s stderr', async (t) => {
  const sock = tempSocket();
  const cl = buildCommandLine({
    machine: 'q35', memoryMiB: 128, cpus: 1, guestIommu: 'intel-iommu', accel: 'tcg',
    devices: [{ host: '0000:99:00.0', group: 7 }], qmp: { path: sock.path }, extraArgs: ['-S', '-display', 'none'],
  });
  try {
    const err = await t.throwsAsync(launchQemu(cl.argv, { path: sock.path }), { instanceOf: QemuLaunchError });
    t.is(
      err!.stderr.trim(),
      'qemu-system-x86_64: -device vfio-pci,host=0000:99:00.0,id=hostdev-0000-99-00-0,bus=rp0,addr=0x0.0: ' +
        'vfio /sys/bus/pci/devices/0000:99:00.0: no such host device: No such file or directory',
    );
  } finally {
    sock.cleanup();
  }
});

test.serial('qemu-system-ppc64 offers spapr-pci-host-bridge and vfio-pci, and a pseries guest has its RAM at 0', async (t) => {
  t.true(qemuAvailable('qemu-system-ppc64'), 'install qemu-system-ppc to run this test');
  const qemu = await startTestQemu({ binary: 'qemu-system-ppc64', machine: 'pseries', memory: '256M' });
  try {
    const qmp = await connectWhenListening(qemu);
    try {
      const caps = await probeCapabilities(qmp);
      t.true(caps.deviceTypes.has(DeviceType.spaprPciHostBridge));
      t.true(caps.deviceTypes.has(DeviceType.vfioPci));
      t.false(caps.deviceTypes.has(DeviceType.intelIommu));
      t.deepEqual(await readGuestMemoryLayout(qmp), { regions: [{ name: 'ram', gpa: 0n, size: 256n << 20n, source: 'boot' }] });
    } finally {
      await qmp.close();
    }
  } finally {
    await qemu.stop();
  }
});

test.serial('once firmware has numbered the buses, a hot-plugged device is visible in query-pci and an ignored unplug says the VM runs', async (t) => {
  // Without -S SeaBIOS runs, assigns bus numbers to the root ports, finds
  // nothing to boot and waits: a running VM with no OS to answer an unplug.
  const qemu = await startTestQemu({ args: ROOT_PORTS, running: true });
  try {
    const qmp = await connectWhenListening(qemu);
    try {
      let secondary = 0;
      for (let i = 0; i < 100 && secondary === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        secondary = flattenPci(await queryPci(qmp)).find((d) => d.qdevId === 'rp1')?.bridge?.secondary ?? 0;
      }
      t.is(secondary, 1);
      const placed = await attachSlots(qmp, [[{ id: 'nic0', driver: 'e1000e', properties: {}, guestFunction: 0 }]]);
      t.deepEqual(placed, [{ id: 'nic0', rootPort: 'rp1', function: 0, guestVisible: true }]);
      const nic = flattenPci(await queryPci(qmp)).find((d) => d.qdevId === 'nic0');
      t.deepEqual(nic && [nic.bus, nic.slot, nic.function, nic.vendorId, nic.deviceId], [1, 0, 0, 0x8086, 0x10d3]);
      const err = await t.throwsAsync(detachDevices(qmp, ['nic0'], { timeoutMs: 300 }), { instanceOf: HotplugError });
      t.regex(err!.message, /The VM is running, so the guest OS ignored the request/);
    } finally {
      await qmp.close();
    }
  } finally {
    await qemu.stop();
  }
});

test.serial('QMP over TCP on loopback negotiates like the UNIX socket', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const p = (probe.address() as { port: number }).port;
      probe.close(() => resolve(p));
    });
  });
  await withQemu(['-qmp', `tcp:127.0.0.1:${port},server=on,wait=off`], async () => {
    const tcp = await connectQmp({ host: '127.0.0.1', port });
    try {
      t.true(tcp.oobEnabled);
      t.deepEqual(await queryStatus(tcp), { status: 'prelaunch', running: false });
    } finally {
      await tcp.close();
    }
  });
});

test.serial('an out-of-band command reaches QEMU as exec-oob and gets QEMU\'s own answer', async (t) => {
  await withQemu([], async (qmp) => {
    const err = await t.throwsAsync(qmp.execute('migrate-pause', undefined, { oob: true }), { instanceOf: QmpCommandError });
    t.is(err!.desc, 'migrate-pause is currently only supported during postcopy-active state');
    const refused = await t.throwsAsync(qmp.execute('query-status', undefined, { oob: true }), { instanceOf: QmpCommandError });
    t.is(refused!.desc, 'The command query-status does not support OOB');
  });
});

test.serial('when function 0 fails, a function already added stays until a guest acknowledges, and the error says so', async (t) => {
  await withQemu(ROOT_PORTS, async (qmp) => {
    const err = await t.throwsAsync(
      attachSlots(
        qmp,
        [
          [
            { id: 'bad0', driver: 'vfio-pci', properties: { host: '0000:99:00.0' }, guestFunction: 0 },
            { id: 'nic1', driver: 'e1000e', properties: {}, guestFunction: 1 },
          ],
        ],
        { rollbackTimeoutMs: 300 },
      ),
      { instanceOf: HotplugError },
    );
    t.is(err!.code, 'HOTPLUG_FAILED');
    // Even a function the guest never saw waits for the guest's eject here:
    // q35 7.2 hands root-port hot-plug to ACPI by default (in
    // guest-unplug.test.ts Linux's pciehp does not bind and the eject comes
    // through ACPI), so the native path's "remove an unexposed function at
    // once" (pcie_cap_slot_unplug_request_cb()) does not apply.
    t.is(
      err!.message,
      'device_add of bad0 failed: vfio /sys/bus/pci/devices/0000:99:00.0: no such host device: No such file or directory ' +
        '(the host has no PCI device at that address; check lspci -D); nic1, added before it, could not be removed again: ' +
        'it stays in the VM until a guest acknowledges the unplug or QEMU exits',
    );
    t.deepEqual(err!.remaining, ['nic1']);
    t.deepEqual((await listRootPorts(qmp)).map((p) => p.occupants), [['/machine/peripheral/nic1'], []]);
  });
});
