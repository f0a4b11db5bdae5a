// The VFIO side of a host session: the kernel's /dev/vfio, or for a simulated
// host vfio-core's mock described from the same host model (core's
// vfioMockHostConfig), so discovery and the ioctls agree.
import { checkViability, describeViability, resolveGroup, hostIommuInfoOf, openType1Target, VfioHost, vfioMockHostConfig, type DmaGroup, type HostIommuInfo, type HostModel, type VfioDmaTarget } from '@vfiokit/core';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import type { HostSession } from './context';

export function openVfioHost(session: HostSession, model: HostModel): VfioHost {
  // The mock is described from the same model discovery read, so both agree on groups and drivers.
  return session.backend === 'mock' ? VfioHost.mock(vfioMockHostConfig(model)) : VfioHost.kernel();
}

/** A type1v2 container holding `groups` (core's openType1Target), with what its IOMMU reports. */
export interface OpenContainer {
  readonly target: VfioDmaTarget;
  readonly info: HostIommuInfo;
  close(): void;
}

export function openType1Container(vfio: VfioHost, model: HostModel, groupIds: readonly number[]): OpenContainer {
  // Decided from the host model before any device node is opened, so the
  // answer names the group and its fix rather than an errno from /dev/vfio:
  // /dev/vfio/N exists only once a device of the group is on vfio-pci, and the
  // group must be viable to join a container (vfio_group_set_container: EPERM).
  for (const id of groupIds) {
    const report = checkViability(model, resolveGroup(model, id));
    if (!report.viable || report.assignable.length === 0) {
      throw new CliError(
        'HOST_GROUP_NOT_VIABLE',
        report.viable ? `group ${id} has no device on vfio-pci, so VFIO cannot open it` : describeViability(report),
        ExitCode.Refused,
        `vfiokit bind ${id}`,
      );
    }
  }
  const target = openType1Target(vfio, groupIds);
  const close = () => target.container.close();
  try {
    return { target, info: hostIommuInfoOf(target.container), close };
  } catch (err) {
    close();
    throw err;
  }
}

/** The groups of a model as the DMA policy names them. */
export function dmaGroupsOf(model: HostModel, ids: readonly number[]): DmaGroup[] {
  return ids.map((id) => {
    const g = model.groups.find((x) => x.id === id)!;
    return { id, reservedRegions: g.reservedRegions };
  });
}
