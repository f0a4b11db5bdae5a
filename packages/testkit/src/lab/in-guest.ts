// What a lab case running inside a lab guest reads of that guest: the
// topology the runner wrote (VFIOKIT_LAB_TOPOLOGY_FILE, see
// x86/topology.ts's LabTopology, the file every x86-family profile writes) and each device's IOMMU group and driver
// in sysfs. One reader for every package's lab cases, imported as
// '@vfiokit/testkit/lab-guest' so a case does not load the rest of testkit.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import type { LabDevice, LabTopology } from './x86/topology';

/** The topology of the lab guest this case runs in; fails outside a lab guest. */
export function labTopology(): LabTopology {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  return JSON.parse(readFileSync(file, 'utf8')) as LabTopology;
}

/** The topology's device playing `role`. */
export function labDevice(role: string): LabDevice {
  const d = labTopology().devices.find((x) => x.role === role);
  assert.ok(d, `the lab topology ${process.env.VFIOKIT_LAB_TOPOLOGY ?? ''} has no device with role ${role}`);
  return d;
}

const sysPci = (bdf: string, leaf: string): string => `/sys/bus/pci/devices/${bdf}/${leaf}`;

/** The IOMMU group number of the PCI device `bdf`, from sysfs. */
export function iommuGroupOf(bdf: string): number {
  return Number(basename(readlinkSync(sysPci(bdf, 'iommu_group'))));
}

/** The driver bound to the PCI device `bdf` now, or null for none. */
export function driverOf(bdf: string): string | null {
  try {
    return basename(readlinkSync(sysPci(bdf, 'driver')));
  } catch {
    return null;
  }
}
