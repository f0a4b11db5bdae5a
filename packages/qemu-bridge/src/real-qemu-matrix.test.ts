// The QEMU-facing behaviour that must hold on every QEMU vfiokit supports,
// run on each build of the matrix: Debian bookworm's 7.2 (the system's) and
// 10.0 from bookworm-backports (unpacked beside it by scripts/fetch-qemu.sh).
import test from 'ava';
import { createServer } from 'node:net';
import { QEMU_MATRIX, qemuBuild, startTestQemu, type QemuBuild, type TestQemu } from '@vfiokit/testkit';
import { buildCommandLine } from './cmdline/builder';
import { DeviceType, probeCapabilities } from './commands/probe';
import { flattenPci, qomGet, queryPci, queryStatus } from './commands/queries';
import { HotplugError, QmpCommandError, QmpTimeoutError } from './errors';
import { attachSlots, detachDevices, listRootPorts } from './hotplug/index';
import type { QmpEvent } from './qmp/events';
import type { QmpSession } from './qmp/protocol';
import { connectQmp } from './qmp/transport';
import { connectWhenListening } from './test-support/real-qemu';

const ROOT_PORTS = [
  '-device', 'pcie-root-port,id=rp1,chassis=1,bus=pcie.0,addr=0x2',
  '-device', 'pcie-root-port,id=rp2,chassis=2,bus=pcie.0,addr=0x3',
];

async function withBuild(
  build: QemuBuild,
  options: { args?: readonly string[]; running?: boolean },
  body: (qmp: QmpSession, qemu: TestQemu) => Promise<void>,
): Promise<void> {
  const qemu = await startTestQemu({ binary: build.binary, args: options.args, running: options.running });
  try {
    const qmp = await connectWhenListening(qemu);
    try {
      await body(qmp, qemu);
    } finally {
      await qmp.close();
    }
  } finally {
    try {
      process.kill(qemu.pid, 'SIGCONT');
    } catch {
      // gone
    }
    await qemu.stop();
  }
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const p = (probe.address() as { port: number }).port;
      probe.close(() => resolve(p));
    });
  });
}

async function waitFor(what: () => Promise<boolean>, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

for (const version of QEMU_MATRIX) {
  const build = (): QemuBuild => qemuBuild(version);

  test.serial(`QEMU ${version} is here (system package or scripts/fetch-qemu.sh)`, (t) => {
    t.is(build().version, version);
  });

  test.serial(`QEMU ${version}: the capability probe finds vfio-pci, root ports and both vIOMMUs`, async (t) => {
    await withBuild(build(), {}, async (qmp) => {
      t.is(`${qmp.greeting.version.major}.${qmp.greeting.version.minor}`, version);
      const caps = await probeCapabilities(qmp);
      for (const type of [DeviceType.vfioPci, DeviceType.pcieRootPort, DeviceType.intelIommu, DeviceType.virtioIommu]) {
        t.true(caps.deviceTypes.has(type), type);
      }
      t.false(caps.deviceTypes.has(DeviceType.spaprPciHostBridge));
      t.true(caps.vfioPciProperties.has('host'));
      t.true(caps.commands.has('getfd') && caps.commands.has('add-fd') && caps.commands.has('query-fdsets'));
      t.true(caps.events.has('DEVICE_DELETED'));
      // vfio-pci takes an opened device fd from QEMU 9.0 on (hw/vfio/pci.c vfio_pci_set_fd).
      t.is(caps.vfioPciProperties.has('fd'), Number(version.split('.')[0]) >= 9);
    });
  });

  test.serial(`QEMU ${version}: an e1000e hot-plugs into the first free root port and an unacknowledged unplug leaves it there`, async (t) => {
    await withBuild(build(), { args: ROOT_PORTS }, async (qmp) => {
      const placed = await attachSlots(qmp, [[{ id: 'nic0', driver: 'e1000e', properties: {}, guestFunction: 0 }]]);
      t.deepEqual(placed, [{ id: 'nic0', rootPort: 'rp1', function: 0, guestVisible: false }]);
      t.deepEqual((await listRootPorts(qmp)).map((p) => [p.id, p.occupants]), [
        ['rp1', ['/machine/peripheral/nic0']],
        ['rp2', []],
      ]);
      const err = await t.throwsAsync(detachDevices(qmp, ['nic0'], { timeoutMs: 300 }), { instanceOf: HotplugError });
      t.is(err!.code, 'UNPLUG_NOT_ACKNOWLEDGED');
      t.deepEqual(err!.remaining, ['nic0']);
      t.is(await qomGet(qmp, '/machine/peripheral/nic0', 'realized'), true);
    });
  });

  test.serial(`QEMU ${version}: on q35 stop leaves an unacknowledged unplug pending and system_reset completes it, as the error advises`, async (t) => {
    await withBuild(build(), { args: ROOT_PORTS, running: true }, async (qmp) => {
      // SeaBIOS numbers the root ports' buses, finds nothing to boot and waits.
      t.true(
        await waitFor(async () => (flattenPci(await queryPci(qmp)).find((d) => d.qdevId === 'rp1')?.bridge?.secondary ?? 0) > 0),
      );
      await attachSlots(qmp, [[{ id: 'nic0', driver: 'e1000e', properties: {}, guestFunction: 0 }]]);
      const events: string[] = [];
      qmp.onEvent((e: QmpEvent) => events.push(e.name === 'DEVICE_DELETED' ? `DEVICE_DELETED ${(e.data as { device?: string }).device}` : e.name));
      const err = await t.throwsAsync(detachDevices(qmp, ['nic0'], { timeoutMs: 500 }), { instanceOf: HotplugError });
      t.is(err!.code, 'UNPLUG_NOT_ACKNOWLEDGED');
      t.regex(err!.message, /reset the VM \(QMP system_reset; the guest OS restarts\) to make QEMU complete the unplug/);
      t.notRegex(err!.message, /stop the VM/i);

      await qmp.execute('stop');
      await new Promise((r) => setTimeout(r, 1_000));
      t.deepEqual(events, ['STOP']);
      t.is(await qomGet(qmp, '/machine/peripheral/nic0', 'realized'), true);

      const deleted = qmp.waitForEvent('DEVICE_DELETED', (e) => e.data.device === 'nic0', 20_000);
      await qmp.execute('system_reset');
      await deleted.promise;
      t.deepEqual(events.filter((e) => e !== 'STOP'), ['RESET', 'DEVICE_DELETED nic0']);
      const gone = await t.throwsAsync(qomGet(qmp, '/machine/peripheral/nic0', 'realized'), { instanceOf: QmpCommandError });
      t.is(gone!.errorClass, 'DeviceNotFound');
    });
  });

  test.serial(`QEMU ${version}: a session survives 1100 commands abandoned while QEMU was frozen and answers afterwards`, async (t) => {
    await withBuild(build(), {}, async (qmp, qemu) => {
      process.kill(qemu.pid, 'SIGSTOP');
      const abandoned = await Promise.allSettled(
        Array.from({ length: 1100 }, () => qmp.execute('query-status', undefined, { timeoutMs: 300 })),
      );
      t.true(abandoned.every((r) => r.status === 'rejected' && r.reason instanceof QmpTimeoutError));
      process.kill(qemu.pid, 'SIGCONT');
      // QEMU now answers all 1100 late, then this one.
      t.deepEqual(await queryStatus(qmp), { status: 'prelaunch', running: false });
      t.is(qmp.endedWith, null);
    });
  });

  test.serial(`QEMU ${version}: the monitor built for an IPv6 address is accepted and answers on ::1`, async (t) => {
    const port = await freePort('::1');
    const cl = buildCommandLine({ machine: 'q35', memoryMiB: 128, cpus: 1, guestIommu: 'none', devices: [], accel: 'tcg', qmp: { host: '::1', port } });
    const monitor = cl.argv.slice(cl.argv.indexOf('-chardev'), cl.argv.indexOf('-mon') + 2);
    t.deepEqual(monitor, ['-chardev', `socket,id=vfiokit-qmp,host=::1,port=${port},server=on,wait=off`, '-mon', 'chardev=vfiokit-qmp,mode=control']);
    await withBuild(build(), { args: monitor }, async () => {
      const tcp = await connectQmp({ host: '::1', port });
      try {
        t.deepEqual(await queryStatus(tcp), { status: 'prelaunch', running: false });
      } finally {
        await tcp.close();
      }
    });
  });

  test.serial(`QEMU ${version}: a second client gets no greeting while the first holds the monitor, and the error says why`, async (t) => {
    await withBuild(build(), {}, async (_qmp, qemu) => {
      const err = await t.throwsAsync(connectQmp(qemu.address, { greetingTimeoutMs: 1_000 }), { instanceOf: QmpTimeoutError });
      t.regex(err!.message, /a QEMU monitor serves one client at a time/);
    });
  });
}
