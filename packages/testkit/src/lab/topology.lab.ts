// Lab cases that hold the lab itself to its README: the guest has the devices,
// drivers and IOMMU groups the topology file (and so the README's table)
// promises. Every other lab case builds on these facts.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { driverOf, iommuGroupOf, labTopology } from './in-guest';

export const cases: { name: string; run: () => void | Promise<void> }[] = [
  {
    name: 'the guest topology is the one VFIOKIT_LAB_TOPOLOGY names',
    run: () => assert.equal(labTopology().name, process.env.VFIOKIT_LAB_TOPOLOGY),
  },
  {
    name: 'every lab device is bound to the driver the topology says',
    run: () => {
      const t = labTopology();
      const seen = t.devices.map((d) => ({ role: d.role, driver: driverOf(d.bdf) }));
      assert.deepEqual(seen, t.devices.map((d) => ({ role: d.role, driver: d.driver })));
    },
  },
  {
    name: 'every lab device shares its IOMMU group with exactly the devices and bridges the topology says',
    run: () => {
      const t = labTopology();
      const byRole = new Map(t.devices.map((d) => [d.role, d.bdf]));
      for (const d of t.devices) {
        const members = readdirSync(`/sys/kernel/iommu_groups/${iommuGroupOf(d.bdf)}/devices`).sort();
        const expected = [...d.groupWith.map((r) => byRole.get(r)!), ...d.groupBridges].sort();
        assert.deepEqual(members, expected, `group of ${d.role} (${d.bdf})`);
      }
    },
  },
  {
    // What the mock's `reset` (VFIO_DEVICE_FLAGS_RESET, DEVICE_RESET) and
    // `vfiokit upgrade`'s refusal (packages/cli/src/cpr-reset.ts) rest on.
    name: 'every lab device has exactly the reset methods the topology says (reset_method; none where the attribute is hidden)',
    run: () => {
      const t = labTopology();
      const methods = (bdf: string): string[] => {
        const file = `/sys/bus/pci/devices/${bdf}/reset_method`;
        return existsSync(file) ? readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean) : [];
      };
      const seen = t.devices.map((d) => ({ role: d.role, methods: methods(d.bdf) }));
      assert.deepEqual(seen, t.devices.map((d) => ({ role: d.role, methods: [...(d.resetMethods ?? [])] })), `reset_method read: ${JSON.stringify(seen)}`);
    },
  },
  {
    name: 'every group with a device bound to vfio-pci has its /dev/vfio node',
    run: () => {
      const t = labTopology();
      for (const d of t.devices.filter((x) => x.driver === 'vfio-pci')) {
        assert.ok(existsSync(`/dev/vfio/${iommuGroupOf(d.bdf)}`), `/dev/vfio/${iommuGroupOf(d.bdf)} for ${d.role}`);
      }
      assert.ok(existsSync('/dev/vfio/vfio'), '/dev/vfio/vfio');
    },
  },
  {
    name: 'each group reports the MSI window as a reserved region',
    run: () => {
      const t = labTopology();
      for (const d of t.devices) {
        const regions = readFileSync(`/sys/kernel/iommu_groups/${iommuGroupOf(d.bdf)}/reserved_regions`, 'utf8');
        assert.match(regions, /^0x0*fee00000 0x0*feefffff msi$/m, `reserved_regions of ${d.role}`);
      }
    },
  },
];
