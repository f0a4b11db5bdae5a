// What the CLI's lab cases (src/*.lab.ts, run inside the lab's x86 guest)
// share: the topology's solo edu and its state in sysfs. Not shipped
// (package.json leaves dist/**/lab/** out of the tarball).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { basename } from 'node:path';

export const DEVICES = '/sys/bus/pci/devices';

/** The PCI address of the lab topology's solo edu. */
export function soloBdf(): string {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  const topology = JSON.parse(fs.readFileSync(file, 'utf8')) as { devices: { role: string; bdf: string }[] };
  const solo = topology.devices.find((d) => d.role === 'solo');
  assert.ok(solo, 'the lab topology has no solo device');
  return solo.bdf;
}

/** The driver bound to `bdf`, or null. */
export function driverOf(bdf: string): string | null {
  try {
    return basename(fs.readlinkSync(`${DEVICES}/${bdf}/driver`));
  } catch {
    return null;
  }
}

/** driver_override of `bdf` as sysfs shows it ('(null)' when unset). */
export const overrideOf = (bdf: string) => fs.readFileSync(`${DEVICES}/${bdf}/driver_override`, 'utf8').trim();

/** The IOMMU group of `bdf`. */
export const groupOf = (bdf: string) => Number(basename(fs.readlinkSync(`${DEVICES}/${bdf}/iommu_group`)));
