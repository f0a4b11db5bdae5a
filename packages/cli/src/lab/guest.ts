// What the CLI's lab cases (src/*.lab.ts and *.iommufd-lab.ts, run inside
// the lab guests) share: the topology's devices by role, their state in
// sysfs, and the shipped vfiokit run as an operator would. Built with the
// cases into dist-test/ (tsconfig.lab.json), never into dist/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
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

