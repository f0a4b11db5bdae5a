// The Container Device Interface spec (cdi.k8s.io, spec 0.6.0) for one
// prepared claim: one CDI device per group, giving the container the VFIO
// container node and the group's node (and, where the kernel has iommufd,
// /dev/iommu and each function's /dev/vfio/devices/vfioX cdev), and the PCI
// addresses in PCI_RESOURCE_<NAME> the way KubeVirt's virt-launcher reads
// them for host devices (pkg/virt-launcher/.../hostdev: comma-separated
// addresses in PCI_RESOURCE_ + the resource name upper-cased, `.` and `/` as `_`).
import * as path from 'node:path';
import type { HostFs } from '@vfiokit/core';
import { removeFileDurably, writeFileAtomic } from './atomic';

export const CDI_VERSION = '0.6.0';

export interface CdiGroup {
  readonly group: number;
  readonly addresses: readonly string[];
}

/** KubeVirt's environment variable name for a resource: PCI_RESOURCE_VFIOKIT_DEV_GROUP. */
export function pciResourceEnv(resourceName: string): string {
  return `PCI_RESOURCE_${resourceName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export function cdiKind(driverName: string): string {
  return `${driverName}/group`;
}

export function cdiDeviceName(claimUid: string, group: number): string {
  return `${claimUid}-${group}`;
}

/** The fully qualified CDI device id the kubelet passes to the runtime. */
export function cdiDeviceId(driverName: string, claimUid: string, group: number): string {
  return `${cdiKind(driverName)}=${cdiDeviceName(claimUid, group)}`;
}

export function cdiSpecFile(cdiDir: string, driverName: string, claimUid: string): string {
  return path.join(cdiDir, `${driverName}-${claimUid}.json`);
}

/** The spec for a claim's groups, as an object (written as JSON). */
export function buildCdiSpec(host: HostFs, driverName: string, claimUid: string, groups: readonly CdiGroup[]): object {
  const iommufd = host.exists('/dev/iommu');
  const all = groups.flatMap((g) => g.addresses);
  return {
    cdiVersion: CDI_VERSION,
    kind: cdiKind(driverName),
    containerEdits: { env: [`${pciResourceEnv(cdiKind(driverName))}=${all.join(',')}`] },
    devices: groups.map((g) => {
      const nodes = [{ path: '/dev/vfio/vfio' }, { path: `/dev/vfio/${g.group}` }];
      if (iommufd) {
        nodes.push({ path: '/dev/iommu' });
        for (const a of g.addresses) {
          const cdev = host.list(`/sys/bus/pci/devices/${a}/vfio-dev`).find((n) => /^vfio\d+$/.test(n));
          if (cdev) nodes.push({ path: `/dev/vfio/devices/${cdev}` });
        }
      }
      return {
        name: cdiDeviceName(claimUid, g.group),
        containerEdits: {
          deviceNodes: nodes,
          env: [`VFIOKIT_GROUP_${g.group}=${g.addresses.join(',')}`],
        },
      };
    }),
  };
}

export function writeCdiSpec(file: string, spec: object): void {
  // CDI specs are read by the container runtime, not secret: 0644 like the runtimes' own.
  writeFileAtomic(file, JSON.stringify(spec, null, 2) + '\n', 0o644);
}

export function removeCdiSpec(file: string): void {
  removeFileDurably(file);
}
