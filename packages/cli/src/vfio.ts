// The VFIO side of a host session: the kernel's /dev/vfio, or for a simulated
// host vfio-core's mock, configured from the same fixture so the two agree
// (the groups, their devices and drivers, and each group's reserved regions).
import { IommuType, VfioHost, type Container, type DmaGroup, type Group, type HostIommuInfo, type HostModel, type MockHostConfig } from '@vfiokit/core';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import type { HostSession } from './context';

/** vfio-core's mock host for a discovered simulated host. */
export function mockConfigFor(model: HostModel): MockHostConfig {
  return {
    groups: model.groups.map((g) => ({
      id: g.id,
      devices: g.devices.map((d) => ({
        address: d.address,
        ...(d.driver === undefined ? {} : { driver: d.driver }),
        model: { kind: 'generic', vendor: d.vendorId, device: d.deviceId, classCode: d.classCode },
      })),
      reserved: g.reservedRegions.map((r) => ({ start: `0x${r.start.toString(16)}`, end: `0x${(r.start + r.size - 1n).toString(16)}` })),
    })),
  };
}

export function openVfioHost(session: HostSession, model: HostModel): VfioHost {
  return session.backend === 'mock' ? VfioHost.mock(mockConfigFor(model)) : VfioHost.kernel();
}

/** A type1v2 container holding `groups`, as a VMM sets one up (VFIO_GROUP_SET_CONTAINER, then VFIO_SET_IOMMU). */
export interface OpenContainer {
  readonly container: Container;
  readonly groups: readonly Group[];
  readonly info: HostIommuInfo;
  close(): void;
}

export function openType1Container(vfio: VfioHost, model: HostModel, groupIds: readonly number[]): OpenContainer {
  const container = vfio.openContainer();
  const groups: Group[] = [];
  const close = () => {
    for (const g of groups.reverse()) g.unsetContainer();
  };
  try {
    for (const id of groupIds) {
      const group = vfio.openGroup(id);
      if (!group.status().viable) {
        throw new CliError(
          'VFIO_GROUP_NOT_VIABLE',
          `group ${id} is not viable: a device in it is held by a host driver`,
          ExitCode.Refused,
          `vfiokit bind ${id}`,
        );
      }
      group.setContainer(container);
      groups.push(group);
    }
    container.setIommu(IommuType.Type1v2);
    const raw = container.iommuInfo();
    const info: HostIommuInfo = {
      pageSizes: raw.iovaPgsizes,
      iovaRanges: (raw.iovaRanges ?? []).map((r) => ({ start: r.start, size: r.end - r.start + 1n })),
      dmaEntryLimit: raw.dmaAvail ?? 65535,
    };
    return { container, groups, info, close };
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
