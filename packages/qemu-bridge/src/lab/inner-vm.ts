// What qemu-bridge's lab cases (*.lab.ts, *.iommufd-lab.ts) share inside a
// lab guest: a tiny q35 inner VM, stopped (-S), built by buildCommandLine
// and started by launchQemu, gone with its folder when the case ends.
// Built with the cases into dist-test/ only.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildCommandLine, type QemuCommandLine, type VmDescription } from '../cmdline/builder';
import { launchQemu, type RunningQemu } from '../process/index';

/** The inner guest's RAM: small, since it runs under TCG inside a TCG guest. */
export const GUEST_MIB = 64;

/** What a case chooses of the inner VM; the rest is fixed here. */
export type InnerVm = Omit<VmDescription, 'machine' | 'memoryMiB' | 'cpus' | 'accel' | 'qmp'>;

/** Runs `body` against the stopped inner VM `vm` describes, and stops it and removes its folder after. */
export async function withInnerVm(vm: InnerVm, body: (running: RunningQemu, cl: QemuCommandLine) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-inner-'));
  const socket = path.join(dir, 'qmp.sock');
  try {
    const cl = buildCommandLine({
      ...vm,
      machine: 'q35',
      memoryMiB: GUEST_MIB,
      cpus: 1,
      accel: 'tcg',
      qmp: { path: socket },
      extraArgs: ['-S', '-display', 'none', ...(vm.extraArgs ?? [])],
    });
    const running = await launchQemu(cl.argv, { path: socket }, { startTimeoutMs: 90_000, commandTimeoutMs: 60_000 });
    try {
      await body(running, cl);
    } finally {
      await running.stop(10_000);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
