// A host model as vfio-core's mock host: the same groups, devices and
// bindings, so `--mock` runs the VFIO ioctls against the host that discovery
// showed. The mock decides viability itself (its own reading of
// driver_managed_dma); a test holds it to checkViability on every fixture.
import { VfioHost, type MockDeviceConfig, type MockDeviceModel, type MockGroupConfig, type MockHostConfig } from '../vfio/index';
import type { HostModel, PciDevice } from './model';
import { workingResetMethods } from './reset';

const EDU = { vendor: 0x1234, device: 0x11e8 };

/**
 * The VFIO system behind a host model: the kernel's /dev/vfio, or for a
 * simulated host vfio-core's mock described from the same model, so
 * discovery and the ioctls agree on groups and drivers.
 */
export function vfioHostOf(model: HostModel, backend: 'kernel' | 'mock'): VfioHost {
  return backend === 'mock' ? VfioHost.mock(vfioMockHostConfig(model)) : VfioHost.kernel();
}

/**
 * The MockHostConfig that describes `model`: its groups, devices, drivers and
 * reserved regions, and its IOMMU. A POWER host (sPAPR TCE) is vfio-core's
 * pseries mock: no type1, the TCE driver with the PE profile QEMU's pseries
 * machine gives, as the pseries lab measured it on the real kernel.
 */
export function vfioMockHostConfig(model: HostModel): MockHostConfig {
  const functions = model.devices.map((d) => d.address);
  const groups: MockGroupConfig[] = model.groups.map((g) => ({
    id: g.id,
    devices: g.devices.map((d) => mockDevice(d, functions)),
    // vfio_iommu_resv_exclude leaves direct-relaxable regions in the IOVA
    // ranges (they are identity maps the device may give up); every other
    // reserved region is cut out of what the container accepts.
    reserved: g.reservedRegions
      .filter((r) => r.type !== 'direct-relaxable')
      .map((r) => ({ start: hex(r.start), end: hex(r.start + r.size - 1n) })),
  }));
  // The pseries mock models the 6.12 kernel the pseries lab boots; its
  // windows come from the PE, not from an aperture or a profile.
  if (model.platform === 'power' || model.iommu.kind === 'spapr-tce') return { spapr: true, groups };
  // The container's IOVA space is the IOMMU's input address space (the domain
  // aperture); attaching a group then cuts that group's reserved regions out.
  const width = model.iommu.addressWidth;
  const iovaRanges = width === undefined ? {} : { iovaRanges: [{ start: '0x0', end: hex((1n << BigInt(width)) - 1n) }] };
  // The measured profile of the host's IOMMU (page sizes, aperture, cache
  // coherency), and its MSI isolation: without it the mock refuses
  // VFIO_SET_IOMMU with EPERM, as the kernel does.
  const profile = model.iommu.kind === 'amd-vi' ? 'amd-vi' : model.iommu.kind === 'arm-smmu-v3' ? 'smmuv3' : undefined;
  const msi = model.iommu.msiIsolation;
  return {
    kernel: mockKernelFor(model.kernelRelease),
    ...(profile === undefined ? {} : { iommuProfile: profile }),
    ...iovaRanges,
    msiIsolated: msi.state !== 'none',
    allowUnsafeInterrupts: msi.allowUnsafeInterrupts === true,
    groups,
  };
}

/** The mock models the two kernels the lab runs: 6.12 and later read as 6.12, the rest as 6.1. */
function mockKernelFor(release: string | undefined): '6.1' | '6.12' {
  const m = /^(\d+)\.(\d+)/.exec(release ?? '');
  if (!m) return '6.1';
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 6 || (major === 6 && minor >= 12) ? '6.12' : '6.1';
}

function mockDevice(d: PciDevice, functions: readonly string[]): MockDeviceConfig {
  return { address: d.address, ...(d.driver === undefined ? {} : { driver: d.driver }), model: deviceModel(d, functions) };
}

function deviceModel(d: PciDevice, functions: readonly string[]): MockDeviceModel {
  // VFIO_DEVICE_FLAGS_RESET: a method that still works when the device is opened.
  const reset = workingResetMethods(d.address, d.resetMethods ?? [], functions).length > 0;
  if (d.vendorId === EDU.vendor && d.deviceId === EDU.device) return { kind: 'edu', reset };
  return {
    kind: 'generic',
    vendor: d.vendorId,
    device: d.deviceId,
    classCode: d.classCode,
    pcie: d.pcieType !== undefined,
    reset,
    // The mock maps memory BARs only; I/O BARs have no mmap and sysfs sizes them exactly.
    bars: d.bars.filter((b) => b.kind === 'mem').map((b) => ({ index: b.index, size: hex(b.size) })),
  };
}

const hex = (n: bigint) => `0x${n.toString(16)}`;
