// What the CLI's lab cases (src/*.lab.ts and *.iommufd-lab.ts, run inside
// the lab guests) share: the topology's devices by role, their state in
// sysfs, and the shipped vfiokit run as an operator would. Built with the
// cases into dist-test/ (tsconfig.lab.json), never into dist/.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { connectQmp, queryStatus } from '@vfiokit/qemu-bridge';
import { labDevice } from '@vfiokit/testkit/lab-guest';

/** The program as shipped (dist/main.js), not a copy built beside the lab cases in dist-test/. */
export const BIN = join(__dirname, '..', '..', 'dist', 'main.js');

/** Runs the shipped CLI with `args`, at most 100 s. */
export function runVfiokit(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 100_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The guest's BDF of the device playing `role` in the lab topology. */
export const labDeviceBdf = (role: string): string => labDevice(role).bdf;

export const DEVICES = '/sys/bus/pci/devices';

/** The PCI address of the lab topology's solo edu. */
export const soloBdf = (): string => labDeviceBdf('solo');

/** driver_override of `bdf` as sysfs shows it ('(null)' when unset). */
export const overrideOf = (bdf: string) => fs.readFileSync(`${DEVICES}/${bdf}/driver_override`, 'utf8').trim();

/** Who holds /dev/vfio/N open. */
export function holders(group: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `/dev/vfio/${group}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** VmLck of `pid` in KiB: the kernel's locked_vm, where type1 charges the pages it pins. */
export const vmLckKiB = (pid: number): number => Number(/^VmLck:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/**
 * Start `vfiokit run` on a 64 MiB q35 guest named `name` holding `bdf`
 * (stopped before boot unless `qemuArgs` say otherwise), `runOptions` before
 * the spec, under `accel` (TCG unless told); resolves once QEMU runs.
 */
export async function startRun(
  bdf: string,
  dir: string,
  { name = 'lab-run', runOptions = [] as readonly string[], qemuArgs = ['-S', '-display', 'none'] as readonly string[], accel = 'tcg' as 'tcg' | 'kvm' } = {},
) {
  const spec = join(dir, 'guest.yaml');
  fs.writeFileSync(spec, `name: ${name}\nmemory: 64M\nmachine: q35\niommu: none\ndevices:\n  - ${bdf}\n`);
  const child = spawn(process.execPath, [BIN, 'run', '--accel', accel, ...runOptions, spec, '--', ...qemuArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const ended = new Promise<number | null>((resolve) => child.on('close', resolve));
  const qemuPid = await new Promise<number>((resolve, reject) => {
    const poll = setInterval(() => {
      const m = /QEMU is running \(pid (\d+)\)/.exec(stdout);
      if (m) {
        clearInterval(poll);
        resolve(Number(m[1]));
      }
    }, 100);
    void ended.then((code) => {
      clearInterval(poll);
      reject(new Error(`vfiokit run ended with ${code} before QEMU ran:\n${stdout}\n${stderr}`));
    });
  });
  return { child, qemuPid, ended, out: () => ({ stdout, stderr }) };
}

/** query-status over the QMP socket at `path`, by qemu-bridge's client: one session, then closed. */
export async function qmpStatus(path: string): Promise<string> {
  const qmp = await connectQmp({ path }, { connectTimeoutMs: 10_000, greetingTimeoutMs: 10_000, commandTimeoutMs: 30_000 });
  try {
    return (await queryStatus(qmp)).status;
  } finally {
    await qmp.close();
  }
}
