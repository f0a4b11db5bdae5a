// What the CLI's lab cases (*.lab.ts, *.iommufd-lab.ts) share inside the lab
// guest: the topology's devices by role, and the built vfiokit binary run
// as an operator would. Compiled with them into dist; no testkit here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The guest's BDF of the device playing `role` in the lab topology (VFIOKIT_LAB_TOPOLOGY_FILE). */
export function labDeviceBdf(role: string): string {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  const topology = JSON.parse(readFileSync(file, 'utf8')) as { devices: { role: string; bdf: string }[] };
  const d = topology.devices.find((x) => x.role === role);
  assert.ok(d, `the lab topology has no ${role} device`);
  return d.bdf;
}

/** Runs the built CLI (dist/main.js) with `args`, at most 100 s. */
export function runVfiokit(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(__dirname, 'main.js'), ...args], { encoding: 'utf8', timeout: 100_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
