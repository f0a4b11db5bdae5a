// `vfiokit attach` / `detach --json` against a real QEMU holding the real
// solo edu (the lab's x86 guest, see packages/testkit/src/lab/README.md):
// the documents a script reads are checked against the published schemas
// (json-schema.ts), and what they say is checked against QEMU and the
// kernel. Through the built binary, as an operator runs it.
//
// The inner QEMU is stopped (-S) and uses native PCIe hot-plug
// (ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off): its root port's slot
// is powered off until a guest turns it on, so device_del unplugs at once
// and DEVICE_DELETED comes without a guest (QEMU's
// pcie_cap_slot_unplug_request_cb; with q35's default ACPI hot-plug it
// waits for a guest that never runs, measured with QEMU 7.2).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { buildCommandLine, launchQemu } from '@vfiokit/qemu-bridge';
import { assertDocument } from './json-schema';
import { iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import { BIN, soloBdf } from './lab/guest';


/** Whether process `pid` holds /dev/vfio/`group` open. */
function holds(pid: number, group: number): boolean {
  return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `/dev/vfio/${group}`;
    } catch {
      return false;
    }
  });
}

function vfiokit(args: readonly string[]): unknown {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `vfiokit ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

export const cases: { name: string; run: () => void | Promise<void>; timeoutMs?: number }[] = [
  {
    name: "vfiokit attach and detach --json of the solo edu into a real QEMU print documents their published schemas accept, and QEMU holds the group between them",
    // QEMU's start and two vfiokit processes under TCG.
    timeoutMs: 300_000,
    run: async () => {
      const bdf = soloBdf();
      const group = iommuGroupOf(bdf);
      const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-attach-'));
      const socket = join(dir, 'qmp.sock');
      // launchQemu keeps its own QMP client on `socket`, and a monitor greets
      // one client at a time: vfiokit gets a monitor of its own.
      const cliSocket = join(dir, 'cli-qmp.sock');
      const cl = buildCommandLine({
        machine: 'q35',
        memoryMiB: 64,
        cpus: 1,
        accel: 'tcg',
        guestIommu: 'none',
        devices: [],
        spareRootPorts: 1,
        qmp: { path: socket },
        extraArgs: ['-S', '-display', 'none', '-global', 'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off', '-qmp', `unix:${cliSocket},server=on,wait=off`],
      });
      const vm = await launchQemu(cl.argv, { path: socket }, { startTimeoutMs: 90_000, commandTimeoutMs: 60_000 });
      try {
        const attached = vfiokit(['attach', '--qmp', cliSocket, '--timeout', '60', bdf]) as { attached: { id: string; rootPort: string }[] };
        assertDocument('attach', attached);
        const id = `hostdev-${bdf.replace(/[:.]/g, '-')}`;
        assert.deepEqual(attached.attached.map((a) => [a.id, a.rootPort]), [[id, cl.spareRootPorts[0]]]);
        assert.ok(holds(vm.pid, group), `QEMU (pid ${vm.pid}) does not hold /dev/vfio/${group} after attach`);

        const detached = vfiokit(['detach', '--qmp', cliSocket, '--timeout', '60', bdf]);
        assertDocument('detach', detached);
        assert.deepEqual(detached, { detached: [id] });
        // QEMU closes the group with its last device (vfio_put_group, from
        // the device's finalize, which may follow DEVICE_DELETED).
        const until = Date.now() + 10_000;
        while (holds(vm.pid, group) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
        assert.equal(holds(vm.pid, group), false, `QEMU still holds /dev/vfio/${group} 10 s after detach`);
      } finally {
        await vm.stop(10_000);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
