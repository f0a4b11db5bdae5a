// qemu-bridge on the iommufd lab kernel (packages/testkit/src/lab/README.md,
// `pnpm lab iommufd`): inside that guest QEMU starts, stopped (-S), with the
// command line buildCommandLine makes for iommufd passthrough, `-object
// iommufd` and the `solo` edu given by its VFIO cdev (`vfio-pci,host=,
// iommufd=`). QEMU 10.0 from the cache (scripts/fetch-qemu.sh), reached
// over the guest's 9p root: Debian bookworm's QEMU 7.2 has no iommufd
// backend (it came in QEMU 8.2). What the kernel shows: QEMU holds
// /dev/iommu and the device's cdev and never the group, the group is
// blocked while the cdev is bound, and QMP shows the edu in the guest.
// And the other way in: QEMU started with only the iommufd object, vfiokit
// opening the cdev itself and hot-plugging it by fd (getfd, then
// `vfio-pci,fd=NAME,iommufd=`), so QEMU needs no access to /dev/vfio at all.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { iommuGroupOf, labDevice } from '@vfiokit/testkit/lab-guest';
import { closefd } from './commands/fds';
import { qomList } from './commands/queries';
import { QmpCommandError } from './errors';
import { attachGroup, detachDevices } from './hotplug/index';
import type { VfioDeviceSpec } from './cmdline/layout';
import { GUEST_MIB, withInnerVm } from './lab/inner-vm';
import type { RunningQemu } from './process/index';

interface Solo extends VfioDeviceSpec {
  /** N of /dev/vfio/devices/vfioN. */
  readonly cdev: number;
}

function qemuBinary(): string {
  const q = process.env.VFIOKIT_LAB_QEMU_IOMMUFD;
  assert.ok(q, 'VFIOKIT_LAB_QEMU_IOMMUFD is not set: the iommufd lab profile names the QEMU (8.2+) these cases run');
  return q;
}

function solo(): Solo {
  const d = labDevice('solo');
  const sys = `/sys/bus/pci/devices/${d.bdf}`;
  const group = iommuGroupOf(d.bdf);
  const cdevs = fs.readdirSync(`${sys}/vfio-dev`).filter((n) => /^vfio\d+$/.test(n));
  assert.equal(cdevs.length, 1, `${sys}/vfio-dev has one vfioN (CONFIG_VFIO_DEVICE_CDEV)`);
  return { host: d.bdf, group, id: 'solo', cdev: Number(cdevs[0]!.slice(4)) };
}

/** What a process holds open: the targets of /proc/PID/fd/*. */
function openFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return fs.readdirSync(dir).flatMap((fd) => {
    try {
      return [fs.readlinkSync(`${dir}/${fd}`)];
    } catch {
      return []; // closed between readdir and readlink
    }
  });
}

/**
 * The block of HMP `info qtree` for the device `id`. query-pci cannot show
 * it: with -S no firmware has numbered the root port's secondary bus yet,
 * and query-pci walks PCI bus numbers (qmp_query_pci_bridge); the qdev tree
 * has it, with the IDs vfio-pci read from the real device's config space.
 */
async function qtreeBlock(vm: RunningQemu, id: string): Promise<string> {
  const text = String(await vm.qmp.execute('human-monitor-command', { 'command-line': 'info qtree' }));
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.includes(`dev: vfio-pci, id "${id}"`));
  assert.ok(at >= 0, `info qtree shows no vfio-pci with id "${id}"`);
  const indent = /^ */.exec(lines[at]!)![0].length;
  const end = lines.findIndex((l, i) => i > at && /^ *dev: /.test(l) && /^ */.exec(l)![0].length <= indent);
  return lines.slice(at, end < 0 ? undefined : end).join('\n');
}

/**
 * Runs `body` against a stopped QEMU with `-object iommufd`: with the solo
 * edu on its command line, or (`dev` undefined) with no device and one
 * empty root port under native PCIe hot-plug, whose unplug completes
 * without a guest (packages/qemu-bridge/README.md).
 */
async function withCdevVm(
  dev: Solo | undefined,
  body: (vm: RunningQemu, argv: readonly string[], spareRootPorts: readonly string[]) => Promise<void>,
): Promise<void> {
  await withInnerVm(
    {
      guestIommu: 'none',
      devices: dev ? [dev] : [],
      spareRootPorts: dev ? 0 : 1,
      iommufd: {},
      binary: qemuBinary(),
      extraArgs: dev ? [] : ['-global', 'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off'],
    },
    (vm, cl) => body(vm, cl.argv, cl.spareRootPorts),
  );
}

export const cases: { name: string; run: () => void | Promise<void>; timeoutMs?: number }[] = [
  {
    name: 'QEMU started with -object iommufd holds /dev/iommu and the edu cdev, not its group, and QMP shows the edu',
    timeoutMs: 240_000,
    run: async () => {
      const dev = solo();
      await withCdevVm(dev, async (vm, argv) => {
        assert.ok(argv.includes('iommufd,id=iommufd0'), `argv has -object iommufd: ${argv.join(' ')}`);
        assert.ok(
          argv.some((a) => a.startsWith('vfio-pci,') && a.includes(`host=${dev.host}`) && a.includes('iommufd=iommufd0')),
          'the edu is a vfio-pci with iommufd=iommufd0',
        );
        const files = openFiles(vm.pid);
        assert.ok(files.includes('/dev/iommu'), `QEMU holds /dev/iommu (open: ${files.filter((f) => f.startsWith('/dev')).join(' ')})`);
        assert.ok(files.includes(`/dev/vfio/devices/vfio${dev.cdev}`), `QEMU holds the edu's cdev vfio${dev.cdev}`);
        assert.ok(!files.includes(`/dev/vfio/${dev.group}`) && !files.includes('/dev/vfio/vfio'), 'QEMU opened neither the group nor the container');
        const block = await qtreeBlock(vm, 'solo');
        assert.match(block, /pci id 1234:11e8/, `the guest's solo is edu (1234:11e8):\n${block}`);
        assert.match(block, new RegExp(`host = "${dev.host}"`), `solo is the host's ${dev.host}`);
        const link = await vm.qmp.execute('qom-get', { path: '/machine/peripheral/solo', property: 'iommufd' });
        assert.equal(link, '/objects/iommufd0', 'solo is linked to the iommufd object');
        const status = (await vm.qmp.execute('query-status')) as { status: string };
        assert.equal(status.status, 'prelaunch', 'the guest is stopped (-S)');
      });
    },
  },
  {
    name: 'while QEMU has the edu cdev bound to its iommufd the group cannot be opened (EBUSY), and can again after QEMU ends',
    timeoutMs: 240_000,
    run: async () => {
      const dev = solo();
      await withCdevVm(dev, async () => {
        // vfio_device_block_group (drivers/vfio/group.c): a cdev bound to an
        // iommufd keeps the legacy group path closed.
        assert.throws(() => fs.openSync(`/dev/vfio/${dev.group}`, 'r+'), { code: 'EBUSY' });
      });
      fs.closeSync(fs.openSync(`/dev/vfio/${dev.group}`, 'r+'));
    },
  },
  {
    name: 'QEMU pins the guest RAM it maps through iommufd as pinned, not locked, memory (VmPin, not VmLck)',
    timeoutMs: 240_000,
    run: async () => {
      const dev = solo();
      await withCdevVm(dev, async (vm) => {
        const status = fs.readFileSync(`/proc/${vm.pid}/status`, 'utf8');
        const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
        // iommufd charges pins to the user's locked_vm (IOPT_PAGES_ACCOUNT_USER,
        // the default mode) and to mm->pinned_vm, not to mm->locked_vm
        // (drivers/iommu/iommufd/pages.c): VmLck stays 0 where type1 showed all RAM.
        assert.equal(kib('VmLck'), 0);
        // Measured: 65792 kB for 64 MiB of RAM (RAM less the 256 KiB that
        // pc.rom and the BIOS shadow, plus the BIOS ROMs, as type1 pinned it).
        assert.ok(kib('VmPin') >= GUEST_MIB * 1024 - 256, `VmPin ${kib('VmPin')} kB covers the guest RAM`);
      });
    },
  },
  {
    name: 'an edu cdev vfiokit opened itself hot-plugs by fd= into a QEMU with only -object iommufd, which holds the cdev and never the group, and lets go of it on unplug',
    timeoutMs: 300_000,
    run: async () => {
      const dev = solo();
      const cdev = `/dev/vfio/devices/vfio${dev.cdev}`;
      const group = `/dev/vfio/${dev.group}`;
      await withCdevVm(undefined, async (vm, argv, spare) => {
        assert.ok(argv.includes('iommufd,id=iommufd0') && !argv.some((a) => a.startsWith('vfio-pci')), `only the iommufd object: ${argv.join(' ')}`);
        // The iommufd object opens /dev/iommu for its first device and closes
        // it with its last (backends/iommufd.c iommufd_backend_connect /
        // _disconnect count `users`): without a device QEMU holds neither.
        const before = openFiles(vm.pid);
        assert.ok(!before.includes('/dev/iommu') && !before.includes(cdev), `before the hot-plug QEMU holds neither /dev/iommu nor ${cdev}`);
        // O_RDWR, as QEMU opens a cdev itself (iommufd_cdev_getfd, hw/vfio/iommufd.c).
        const fd = fs.openSync(cdev, 'r+');
        let placed;
        try {
          placed = await attachGroup(vm.qmp, [{ host: dev.host, group: dev.group, id: 'solo', deviceFd: fd, iommufd: 'iommufd0' }], {
            rootPorts: spare,
            deviceAddTimeoutMs: 120_000,
          });
        } finally {
          // QEMU has its own copy (getfd dups it); from here on only QEMU's counts.
          fs.closeSync(fd);
        }
        assert.deepEqual(placed, [{ id: 'solo', rootPort: spare[0], function: 0, guestVisible: false }]);
        const held = openFiles(vm.pid);
        assert.ok(held.includes(cdev) && held.includes('/dev/iommu'), `QEMU holds ${cdev}, passed by fd, and /dev/iommu (open: ${held.filter((f) => f.startsWith('/dev')).join(' ')})`);
        assert.ok(!held.includes(group) && !held.includes('/dev/vfio/vfio'), 'QEMU opened neither the group nor the container');
        // vfio-pci realize consumed the named fd (monitor_fd_param): nothing is left to close.
        const left = await closefd(vm.qmp, 'vfiokit-fd-solo').then(
          () => undefined,
          (err: unknown) => err,
        );
        assert.ok(left instanceof QmpCommandError && /not found/.test(left.desc), `the named fd was taken by the device: ${String(left)}`);
        assert.equal(await vm.qmp.execute('qom-get', { path: '/machine/peripheral/solo', property: 'iommufd' }), '/objects/iommufd0');
        assert.match(await qtreeBlock(vm, 'solo'), /pci id 1234:11e8/, 'the hot-plugged device is the edu (1234:11e8)');
        // The cdev is bound to QEMU's iommufd: the group stays closed (vfio_device_block_group).
        assert.throws(() => fs.openSync(group, 'r+'), { code: 'EBUSY' });

        await detachDevices(vm.qmp, ['solo'], { timeoutMs: 60_000 });
        assert.ok(!(await qomList(vm.qmp, '/machine/peripheral')).some((p) => p.name === 'solo'), 'solo is gone from QOM');
        // The device's fd, and with the last device /dev/iommu, are closed
        // when the device is finalized, which may come after DEVICE_DELETED.
        const holding = (): string[] => openFiles(vm.pid).filter((f) => f === cdev || f === '/dev/iommu');
        const until = Date.now() + 10_000;
        while (holding().length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(holding(), [], 'QEMU let go of the cdev and /dev/iommu within 10 s of the unplug');
        // Unbound, the cdev no longer blocks the group, while QEMU still runs.
        fs.closeSync(fs.openSync(group, 'r+'));
        assert.equal((await vm.qmp.execute('query-status') as { status: string }).status, 'prelaunch', 'QEMU is still up and stopped');
      });
    },
  },
];
