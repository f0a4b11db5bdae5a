// The DmaTarget seam on vfio-core's type1 containers (mock or kernel), and
// the host facts the policy needs, read from the container itself.
import type { DmaGroup, DmaTarget, HostIommuInfo, MapBatch, UnmapBatch } from './target';
import { VfioHost, type MockHostConfig, type TceContainer, type Type1Container } from '../vfio/index';
import type { SpaprTarget } from './spapr';
import { assertGroupsAssignable, resolveGroup } from '../host/bind';
import type { HostModel } from '../host/model';
import type { HostFs } from '../host/seam';

/** A type1v2 container as a DmaTarget: each batch is one napi call. */
export class VfioDmaTarget implements DmaTarget {
  constructor(readonly container: Type1Container) {}

  mapBatch(b: MapBatch): number {
    return this.container.mapBatch(b.entries, b.flags).ioctls;
  }

  unmapBatch(b: UnmapBatch): number {
    return this.container.unmapBatch(b.entries).ioctls;
  }
}

/** What VFIO_IOMMU_GET_INFO says, in the policy's terms (the kernel gives inclusive range ends). */
export function hostIommuInfoOf(container: Type1Container): HostIommuInfo {
  const info = container.iommuInfo();
  return {
    pageSizes: info.iovaPgsizes,
    // A kernel without the IOVA-range capability (before 5.4) checks no range.
    iovaRanges: (info.iovaRanges ?? [{ start: 0n, end: (1n << 64n) - 1n }]).map((r) => ({ start: r.start, size: r.end - r.start + 1n })),
    // Without the DMA-available capability, the kernel's default limit.
    dmaEntryLimit: info.dmaAvail ?? 65535,
  };
}

/** PCI address of the stand-in device of a mock group. */
function mockAddress(group: number): string {
  return `0000:${((group >> 5) & 0xff).toString(16).padStart(2, '0')}:${(group & 0x1f).toString(16).padStart(2, '0')}.0`;
}

/** A mock host whose IOMMU and groups are `host` and `groups`, each group holding one device bound to vfio-pci. */
export function mockHostConfig(host: HostIommuInfo, groups: readonly DmaGroup[]): MockHostConfig {
  const hex = (n: bigint) => '0x' + n.toString(16);
  return {
    iovaPgsizes: hex(host.pageSizes),
    iovaRanges: host.iovaRanges.map((r) => ({ start: hex(r.start), end: hex(r.start + r.size - 1n) })),
    dmaEntryLimit: host.dmaEntryLimit,
    groups: groups.map((g) => ({
      id: g.id,
      devices: [{ address: mockAddress(g.id), driver: 'vfio-pci' }],
      reserved: g.reservedRegions.filter((r) => r.type !== 'direct-relaxable').map((r) => ({ start: hex(r.start), end: hex(r.start + r.size - 1n) })),
    })),
  };
}

/** One type1v2 container holding `groups` on `vfio` (a mock host or the kernel), as a DmaTarget. */
export function openType1Target(vfio: VfioHost, groups: readonly number[]): VfioDmaTarget {
  return new VfioDmaTarget(vfio.openType1([...groups]));
}

/** A type1v2 container of a host's groups, with what its IOMMU reports and the groups as the policy names them. */
export interface HostContainer {
  readonly target: VfioDmaTarget;
  readonly info: HostIommuInfo;
  readonly groups: readonly DmaGroup[];
  /** Closes the container and its groups; idempotent. */
  close(): void;
}

/**
 * The one way from a host model to a container: every group is checked
 * assignable first (assertGroupsAssignable: viable, a device on vfio-pci),
 * so a refusal names the group and its bind rather than an errno of
 * /dev/vfio; then one type1v2 container holds them all.
 */
export function openHostContainer(vfio: VfioHost, host: HostFs, model: HostModel, ids: readonly number[]): HostContainer {
  assertGroupsAssignable(host, model, ids);
  const target = openType1Target(vfio, ids);
  const close = () => target.container.close();
  try {
    const groups = ids.map((id) => ({ id, reservedRegions: resolveGroup(model, id).reservedRegions }));
    return { target, info: hostIommuInfoOf(target.container), groups, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** What `openMockDmaTarget` opens, for reports. */
export const MOCK_TARGET_KIND = "vfio-core's mock backend through napi";

/** A container on a fresh mock host configured as `host`, holding `groups`. */
export function openMockDmaTarget(host: HostIommuInfo, groups: readonly DmaGroup[]): VfioDmaTarget {
  return openType1Target(VfioHost.mock(mockHostConfig(host, groups)), groups.map((g) => g.id));
}

/** vfio-core's sPAPR TCE container as the sPAPR translator's target. */
export function spaprTargetOf(c: TceContainer): SpaprTarget {
  return {
    info: () => {
      const i = c.info();
      return {
        dma32Start: i.dma32Start,
        dma32Size: i.dma32Size,
        ...(i.ddw ? { ddw: { pageSizes: i.ddw.pageSizes, maxWindows: i.ddw.maxWindows } } : {}),
      };
    },
    createWindow: (pageShift, size) => ({ start: c.createWindow(pageShift, size).start }),
    removeWindow: (start) => c.removeWindow(start),
    register: (vaddr, size) => c.register(vaddr, size),
    unregister: (vaddr, size) => c.unregister(vaddr, size),
    map: (iova, vaddr, size, perm) => c.map(iova, vaddr, size, perm),
    unmap: (iova, size) => c.unmap(iova, size),
  };
}
