// qemu-bridge on the real kernel: inside the lab guest (q35, emulated VT-d,
// edu devices bound to vfio-pci; see packages/testkit/src/lab/README.md) the
// host's qemu-system-x86_64 runs a tiny inner VM built by buildCommandLine and
// started by launchQemu, and real vfio-pci edu devices are hot-plugged into
// it over QMP. What the kernel shows: QEMU pins all guest RAM (VmLck) as soon
// as a device is assigned to a guest whose IOMMU is absent or not yet on,
// exactly the RAM sections of QEMU's flat view plus the BIOS ROMs it had
// loaded; and an unplug that no guest acknowledges ends in a clear error.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { iommuGroupOf, labDevice } from '@vfiokit/testkit/lab-guest';
import type { VfioDeviceSpec } from './cmdline/layout';
import { HotplugError } from './errors';
import { attachGroup, detachDevices } from './hotplug/index';
import { GUEST_MIB, withInnerVm } from './lab/inner-vm';
import type { RunningQemu } from './process/index';

function device(role: string): VfioDeviceSpec {
  const d = labDevice(role);
  return { host: d.bdf, group: iommuGroupOf(d.bdf), id: role };
}

/**
 * Sizes in KiB of what the system address space maps, read from QEMU's own
 * flat view (HMP `info mtree -f`, AS "memory"): the `ram` sections, and the
 * `rom` sections holding the BIOS (pc.bios and its isa-bios alias at 0xe0000).
 */
async function flatViewKiB(vm: RunningQemu): Promise<{ ram: number; bios: number }> {
  const text = String(await vm.qmp.execute('human-monitor-command', { 'command-line': 'info mtree -f' }));
  const view = text.split(/\n(?=FlatView #)/).find((v) => /^ AS "memory", root: system$/m.test(v));
  assert.ok(view, 'info mtree -f shows no flat view for AS "memory"');
  let ram = 0;
  let bios = 0;
  for (const m of view.matchAll(/^ +([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (ram|rom)\): (\S+)/gm)) {
    const kib = (parseInt(m[2]!, 16) - parseInt(m[1]!, 16) + 1) / 1024;
    if (m[3] === 'ram') ram += kib;
    else if (m[4] === 'pc.bios') bios += kib;
  }
  return { ram, bios };
}

/** mm->locked_vm of a process, in KiB, as /proc/PID/status shows it (VmLck). */
function vmLckKiB(pid: number): number {
  const m = /^VmLck:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `/proc/${pid}/status has no VmLck line`);
  return Number(m[1]);
}

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'a vfio-pci edu hot-plugged into a root port of a guest without IOMMU pins all guest RAM (VmLck)',
    run: async () => {
      const solo = device('solo');
      await withInnerVm({ guestIommu: 'none', devices: [], spareRootPorts: 1 }, async (vm) => {
        assert.equal(vmLckKiB(vm.pid), 0, 'nothing is pinned before a device is assigned');
        const placed = await attachGroup(vm.qmp, [solo]);
        assert.deepEqual(placed, [{ id: 'solo', rootPort: 'rp0', function: 0, guestVisible: false }]);
        // VFIO pins every RAM section of the flat view: all guest RAM but the
        // 256 KiB window 0xc0000-0xfffff where pc.rom and the BIOS shadow it
        // at reset (pc_memory_init()). The BIOS ROMs are pinned too (256 KiB
        // pc.bios + its 128 KiB alias, each mapping counted); pc.rom holds no
        // option ROM with -nodefaults, so its pages are the zero page, which
        // type1 does not count (is_invalid_reserved_pfn()).
        const view = await flatViewKiB(vm);
        assert.deepEqual(view, { ram: GUEST_MIB * 1024 - 256, bios: 384 });
        assert.equal(vmLckKiB(vm.pid), view.ram + view.bios);
      });
    },
  },
  {
    name: 'unplugging the edu from a guest that is not running ends in UNPLUG_NOT_ACKNOWLEDGED and RAM stays pinned',
    run: async () => {
      const solo = device('solo');
      await withInnerVm({ guestIommu: 'none', devices: [], spareRootPorts: 1 }, async (vm) => {
        await attachGroup(vm.qmp, [solo]);
        await assert.rejects(detachDevices(vm.qmp, ['solo'], { timeoutMs: 3_000 }), (err: unknown) => {
          assert.ok(err instanceof HotplugError);
          assert.equal(err.code, 'UNPLUG_NOT_ACKNOWLEDGED');
          assert.deepEqual(err.remaining, ['solo']);
          assert.match(err.message, /The VM is not running \(status prelaunch\)/);
          return true;
        });
        assert.equal(vmLckKiB(vm.pid), GUEST_MIB * 1024 - 256 + 384);
      });
    },
  },
  {
    name: 'both functions of the multifunction edu hot-plug into one root port and pin guest RAM once',
    run: async () => {
      const mf = [device('mf-0'), device('mf-1')];
      assert.equal(mf[0]!.group, mf[1]!.group, 'mf-0 and mf-1 share an IOMMU group');
      await withInnerVm({ guestIommu: 'none', devices: [], spareRootPorts: 2 }, async (vm) => {
        const placed = await attachGroup(vm.qmp, mf);
        assert.deepEqual(
          placed.map((p) => [p.id, p.rootPort, p.function]),
          [
            ['mf-1', 'rp0', 1],
            ['mf-0', 'rp0', 0],
          ],
        );
        // One container for the group, so guest RAM is pinned once.
        assert.equal(vmLckKiB(vm.pid), GUEST_MIB * 1024 - 256 + 384);
      });
    },
  },
  {
    name: 'a cold-plugged edu behind an intel-iommu the guest has not turned on still pins all guest RAM',
    run: async () => {
      const solo = device('solo');
      await withInnerVm({ guestIommu: 'intel-iommu', devices: [solo], spareRootPorts: 0 }, async (vm) => {
        // Cold-plugged, vfio-pci pins before the first reset loads the BIOS
        // (rom_reset()): the read-only ROM mappings then pin zero pages,
        // which are not counted, and only the RAM sections remain.
        const view = await flatViewKiB(vm);
        assert.equal(view.ram, GUEST_MIB * 1024 - 256);
        assert.equal(vmLckKiB(vm.pid), view.ram);
      });
    },
  },
  {
    name: 'a cold-plugged edu behind a virtio-iommu no guest driver has probed still pins all guest RAM',
    run: async () => {
      const solo = device('solo');
      await withInnerVm({ guestIommu: 'virtio-iommu', devices: [solo], spareRootPorts: 0 }, async (vm) => {
        // virtio-iommu starts in bypass (its boot-bypass property, on by
        // default), so until a driver attaches endpoints to domains DMA is
        // untranslated and QEMU maps all RAM, as with a VT-d that is off.
        const view = await flatViewKiB(vm);
        assert.equal(view.ram, GUEST_MIB * 1024 - 256);
        assert.equal(vmLckKiB(vm.pid), view.ram);
      });
    },
  },
];
