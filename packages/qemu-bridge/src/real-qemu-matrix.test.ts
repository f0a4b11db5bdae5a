// The QEMU-facing behaviour that must hold on every QEMU vfiokit supports,
// run on each build of the matrix: Debian bookworm's 7.2 (the system's) and
// 10.0 from bookworm-backports (unpacked beside it by scripts/fetch-qemu.sh).
import test from 'ava';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QEMU_MATRIX, qemuBuild, startTestQemu, type QemuBuild, type TestQemu } from '@vfiokit/testkit';
import { buildCommandLine } from './cmdline/builder';
import { DeviceType, probeCapabilities } from './commands/probe';
import { flattenPci, qomGet, queryPci, queryStatus } from './commands/queries';
import { addFd, closefd, getfd, queryFdsets, removeFd } from './commands/fds';
import { HotplugError, QmpCommandError, QmpFdPassingError, QmpTimeoutError } from './errors';
import { attachGroup, attachSlots, detachDevices, listRootPorts } from './hotplug/index';
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

/** A private temporary folder, removed after `body`. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-fd-'));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

  test.serial(`QEMU ${version}: an fd passed with getfd is the one QEMU writes a migration stream to`, async (t) => {
    await withTempDir(async (dir) => {
      await withBuild(build(), {}, async (qmp) => {
        const path = join(dir, 'migration');
        const fd = openSync(path, 'w');
        try {
          await getfd(qmp, 'mig0', fd);
        } finally {
          closeSync(fd); // QEMU holds its own copy now
        }
        await qmp.execute('migrate', { uri: 'fd:mig0' });
        t.true(await waitFor(async () => statSync(path).size >= 4));
        // QEMU_VM_FILE_MAGIC (migration/savevm.c): the start of every migration stream.
        t.is(readFileSync(path).subarray(0, 4).toString('latin1'), 'QEVM');
        await qmp.execute('migrate_cancel');
        // The name was consumed by the migration: QEMU no longer has it.
        const err = await t.throwsAsync(closefd(qmp, 'mig0'), { instanceOf: QmpCommandError });
        t.is(err!.desc, "File descriptor named 'mig0' not found");
      });
    });
  });

  test.serial(`QEMU ${version}: an fd added to an fd set is listed, opened by QEMU through /dev/fdset, and remove-fd releases it as this version does`, async (t) => {
    await withTempDir(async (dir) => {
      await withBuild(build(), {}, async (qmp) => {
        const path = join(dir, 'disk.img');
        writeFileSync(path, Buffer.alloc(1024 * 1024));
        const fd = openSync(path, 'r+');
        let added;
        try {
          added = await addFd(qmp, fd, { opaque: 'vfiokit-test' });
        } finally {
          closeSync(fd);
        }
        t.deepEqual(await queryFdsets(qmp), [{ fdsetId: added.fdsetId, fds: [{ fd: added.fd, opaque: 'vfiokit-test' }] }]);
        await qmp.execute('blockdev-add', { driver: 'file', 'node-name': 'fdnode', filename: `/dev/fdset/${added.fdsetId}` });
        const nodes = (await qmp.execute('query-named-block-nodes')) as { 'node-name': string; file: string }[];
        t.deepEqual(nodes.filter((n) => n['node-name'] === 'fdnode').map((n) => n.file), [`/dev/fdset/${added.fdsetId}`]);
        await qmp.execute('blockdev-del', { 'node-name': 'fdnode' });
        await removeFd(qmp, added.fdsetId, added.fd);
        const reopen = qmp.execute('blockdev-add', { driver: 'file', 'node-name': 'fdnode2', filename: `/dev/fdset/${added.fdsetId}` });
        if (version === '7.2') {
          // 7.2 closes removed fds only while the VM runs (monitor/fds.c
          // monitor_fdset_cleanup() tests runstate_is_running(); later QEMUs
          // do not): in prelaunch the set still holds and opens the fd.
          await reopen;
          await qmp.execute('blockdev-del', { 'node-name': 'fdnode2' });
          t.is((await queryFdsets(qmp)).length, 1);
        } else {
          const again = await t.throwsAsync(reopen, { instanceOf: QmpCommandError });
          t.is(again!.desc, `Failed to find fdset /dev/fdset/${added.fdsetId}`);
          t.deepEqual(await queryFdsets(qmp), []);
        }
      });
    });
  });

  test.serial(`QEMU ${version}: descriptors are refused over TCP before anything is sent, and the session goes on`, async (t) => {
    const port = await freePort('127.0.0.1');
    await withBuild(build(), { args: ['-qmp', `tcp:127.0.0.1:${port},server=on,wait=off`] }, async () => {
      const tcp = await connectQmp({ host: '127.0.0.1', port });
      const fd = openSync('/dev/null', 'r');
      try {
        const err = await t.throwsAsync(getfd(tcp, 'x', fd), { instanceOf: QmpFdPassingError });
        t.regex(err!.message, /descriptors pass only over a UNIX socket \(SCM_RIGHTS\)/);
        t.deepEqual(await queryStatus(tcp), { status: 'prelaunch', running: false });
      } finally {
        closeSync(fd);
        await tcp.close();
      }
    });
  });

  test.serial(`QEMU ${version}: a vfio-pci hot-plug with a device fd passes it by getfd and leaves no named fd behind when QEMU refuses it`, async (t) => {
    await withBuild(build(), { args: ROOT_PORTS }, async (qmp) => {
      // /dev/null is no VFIO device, and this host has no /dev/iommu for an
      // iommufd object: QEMU must take the fd by name, then refuse the device.
      const fd = openSync('/dev/null', 'r+');
      try {
        const local = await t.throwsAsync(attachGroup(qmp, [{ host: '0000:99:00.0', group: 7, id: 'hostdev0', deviceFd: fd }]), {
          instanceOf: HotplugError,
        });
        t.is(local!.code, 'HOTPLUG_INVALID_REQUEST');
        t.regex(local!.message, /^0000:99:00.0: a device fd needs an iommufd object to attach to/);
        const err = await t.throwsAsync(
          attachGroup(qmp, [{ host: '0000:99:00.0', group: 7, id: 'hostdev0', deviceFd: fd, iommufd: 'iommufd0' }]),
          { instanceOf: HotplugError },
        );
        t.is(err!.code, 'HOTPLUG_FAILED');
        t.is(
          err!.message,
          `device_add of hostdev0 failed: ${version === '7.2' ? "Property 'vfio-pci.iommufd' not found" : "Device 'iommufd0' not found"}`,
        );
        const closed = await t.throwsAsync(closefd(qmp, 'vfiokit-fd-hostdev0'), { instanceOf: QmpCommandError });
        t.is(closed!.desc, "File descriptor named 'vfiokit-fd-hostdev0' not found");
        t.true((await listRootPorts(qmp)).every((p) => p.occupants.length === 0));
      } finally {
        closeSync(fd);
      }
    });
  });
}
