// Which way QEMU takes the guest's devices: through iommufd (`-object
// iommufd` + `vfio-pci,iommufd=`, each device by its VFIO cdev) or through
// the VFIO container and group (type1 or sPAPR TCE). iommufd is chosen when
// the host kernel and the QEMU both offer it; otherwise the container, with
// every reason iommufd was not taken, so the operator knows what to change.
import type { HostModel } from '../host/index';
import type { GuestSpec } from './spec';

export type PassthroughBackend = 'iommufd' | 'container';

export interface BackendChoice {
  readonly backend: PassthroughBackend;
  /** Why this backend: for iommufd what made it possible; for the container each thing that ruled iommufd out. */
  readonly reasons: readonly string[];
}

/** What the VMM offers: QEMU's version as `major.minor`, when known. */
export interface VmmCapabilities {
  readonly qemuVersion?: string;
  /** What was asked for the version, for the messages (`qemu-system-x86_64 --version`). */
  readonly probedWith?: string;
  /** Why the version is unknown (the binary is missing, printed no version). */
  readonly probeError?: string;
}

/** QEMU 8.2 added the iommufd backend (backends/iommufd.c) and vfio-pci's iommufd= link. */
export const QEMU_IOMMUFD_SINCE = '8.2';

/** `a` >= `b` for `major.minor` strings. */
export function versionAtLeast(a: string, b: string): boolean {
  const [am, an] = a.split('.').map(Number) as [number, number];
  const [bm, bn] = b.split('.').map(Number) as [number, number];
  return am > bm || (am === bm && (an ?? 0) >= (bn ?? 0));
}

/**
 * Whether the host kernel has VFIO device cdevs (CONFIG_VFIO_DEVICE_CDEV),
 * with the evidence: /proc/devices' `vfio-dev` char major (vfio_cdev_init
 * registers it), else a device bound to vfio-pci with or without a
 * `vfio-dev/vfioN/dev` node. Undefined when nothing shows it.
 */
export function cdevSupport(host: HostModel): { readonly has: boolean; readonly why: string } | undefined {
  if (host.vfioCdevs !== undefined) {
    return { has: host.vfioCdevs, why: host.vfioCdevs ? '/proc/devices lists vfio-dev' : '/proc/devices lists no vfio-dev char device' };
  }
  const bound = host.devices.filter((d) => d.driver === 'vfio-pci');
  const withCdev = bound.find((d) => d.vfioCdev !== undefined);
  if (withCdev) return { has: true, why: `${withCdev.address} has /dev/vfio/devices/vfio${withCdev.vfioCdev}` };
  if (bound.length > 0) return { has: false, why: `${bound[0]!.address} is bound to vfio-pci but has no vfio-dev/vfioN/dev` };
  return undefined;
}

/**
 * iommufd when the machine can use it (q35), the kernel has /dev/iommu and
 * VFIO cdevs, and QEMU is 8.2 or newer; the container otherwise, saying why.
 * `vmm` is asked only when the host offers iommufd (probing QEMU costs a
 * process), through a function.
 */
export function chooseBackend(host: HostModel, machine: GuestSpec['machine'], vmm: () => VmmCapabilities): BackendChoice {
  const no: string[] = [];
  if (machine === 'pseries') {
    return { backend: 'container', reasons: ['a pseries guest uses sPAPR TCE, which only the VFIO container serves (iommufd has no sPAPR support)'] };
  }
  if (!host.iommufd) {
    no.push('no /dev/iommu: the kernel has no CONFIG_IOMMUFD (Debian\'s kernels are built without it) or the iommufd module is not loaded');
  }
  const cdev = cdevSupport(host);
  if (host.iommufd && cdev?.has === false) {
    no.push(`no VFIO device cdevs: the kernel has no CONFIG_VFIO_DEVICE_CDEV (${cdev.why})`);
  } else if (host.iommufd && cdev === undefined) {
    no.push('no device is bound to vfio-pci and /proc/devices cannot be read, so whether the kernel has VFIO device cdevs is unknown; plan again after binding');
  }
  if (no.length > 0) return { backend: 'container', reasons: no };
  const v = vmm();
  const asked = v.probedWith ?? 'QEMU';
  if (v.qemuVersion === undefined) {
    return { backend: 'container', reasons: [`the QEMU version is unknown (${asked}: ${v.probeError ?? 'no version printed'}); iommufd needs QEMU ${QEMU_IOMMUFD_SINCE} or newer`] };
  }
  if (!versionAtLeast(v.qemuVersion, QEMU_IOMMUFD_SINCE)) {
    return { backend: 'container', reasons: [`QEMU ${v.qemuVersion} (${asked}) is too old: -object iommufd came in QEMU ${QEMU_IOMMUFD_SINCE}`] };
  }
  return { backend: 'iommufd', reasons: [`/dev/iommu and VFIO device cdevs (${cdev!.why})`, `QEMU ${v.qemuVersion} (${asked}) has -object iommufd`] };
}
