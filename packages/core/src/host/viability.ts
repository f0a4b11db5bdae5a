// Viability as the kernel decides it. Since Linux 5.19 a group is viable when
// no device in it is bound to a driver that uses the kernel's DMA API: the
// driver core calls iommu_device_use_default_domain() in pci_dma_configure()
// for every driver that does not set `driver_managed_dma`, and
// VFIO_GROUP_GET_STATUS reports VIABLE only while
// !iommu_group_dma_owner_claimed() (vfio_group_ioctl_get_status). Before 5.19
// vfio_dev_driver_allowed() decided instead: no driver, a VFIO driver,
// pci-stub, or any driver on a device whose header is not type 0 (bridges).
import { GroupNotViableError } from './errors';
import type { HostModel, IommuGroup, PciDevice } from './model';
import { knownProbeRefusal } from './probe';
import type { SafetyFinding } from './safety';

/**
 * PCI drivers that set `.driver_managed_dma = true` and so leave a group
 * viable: vfio-pci and the vfio-pci variant drivers, pci-stub
 * (drivers/pci/pci-stub.c) and the PCIe port driver (commit c7d469849747,
 * "PCI: portdrv: Set driver_managed_dma").
 */
export const DRIVER_MANAGED_DMA: ReadonlySet<string> = new Set([
  'vfio-pci',
  'pci-stub',
  'pcieport',
  'mlx5_vfio_pci',
  'hisi_acc_vfio_pci',
  'pds_vfio_pci',
  'virtio_vfio_pci',
  'nvgrace_gpu_vfio_pci',
  'qat_vfio_pci',
  'xe-vfio-pci',
]);

/** Drivers VFIO lets into a group under the pre-5.19 rule (vfio_driver_allowed[]). */
const PRE_5_19_ALLOWED: ReadonlySet<string> = new Set(['pci-stub']);

/** Which of the kernel's two rules applies. */
export type ViabilityRule = 'dma-owner' | 'driver-allowlist';

/** The rule the host's kernel applies: 5.19 and later, or an unknown kernel, use DMA ownership. */
export function viabilityRuleFor(kernelRelease: string | undefined): ViabilityRule {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease ?? '');
  if (!m) return 'dma-owner';
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 19) ? 'dma-owner' : 'driver-allowlist';
}

/** A device that makes its group not viable. */
export interface BlockingDevice {
  readonly address: string;
  readonly driver: string;
  /** The command that fixes it. */
  readonly fix: string;
  /**
   * Why `vfiokit bind` is not the fix (bind would refuse the group: an SR-IOV
   * PF with VFs enabled, say); `fix` then clears that refusal first.
   */
  readonly bindRefused?: string;
}

/** What the kernel would say about a group, and why. */
export interface ViabilityReport {
  readonly group: number;
  readonly viable: boolean;
  readonly rule: ViabilityRule;
  /** Devices bound to a DMA-using driver, in address order. */
  readonly blocking: readonly BlockingDevice[];
  /** Devices bound to vfio-pci: the ones a VMM can open. */
  readonly assignable: readonly string[];
  /** Devices that do not block but cannot be opened either (no driver, pcieport, pci-stub). */
  readonly bystanders: readonly string[];
}

/** True when `device`'s binding leaves its group viable under `rule`. */
export function allowsViability(device: PciDevice, rule: ViabilityRule): boolean {
  if (device.driver === undefined) return true;
  if (rule === 'dma-owner') return DRIVER_MANAGED_DMA.has(device.driver);
  return device.driver === 'vfio-pci' || PRE_5_19_ALLOWED.has(device.driver) || device.headerType !== 'normal';
}

/**
 * Decide a group's viability the way the host's kernel does. Given the host's
 * safety findings, each blocking device's fix carries the `--force` that
 * bind would ask for, so the fix printed is never one bind then refuses.
 */
export function checkViability(model: HostModel, group: IommuGroup, safety: readonly SafetyFinding[] = []): ViabilityReport {
  const rule = viabilityRuleFor(model.kernelRelease);
  const moved = new Set(group.devices.filter((d) => d.driver !== 'vfio-pci' && (!d.isBridge || !allowsViability(d, rule))).map((d) => d.address));
  const overrides = [...new Set(safety.filter((f) => moved.has(f.address)).map((f) => f.override))];
  const bindFix = (address: string) => ['vfiokit bind', ...overrides, address].join(' ');
  // bind refuses the whole group when it would refuse any device it moves.
  const refusal = group.devices
    .filter((d) => d.driver !== 'vfio-pci')
    .map(knownProbeRefusal)
    .find((r) => r !== undefined);
  const blocking: BlockingDevice[] = group.devices
    .filter((d) => !allowsViability(d, rule))
    .map((d) =>
      refusal
        ? { address: d.address, driver: d.driver!, fix: refusal.fix, bindRefused: `${refusal.reason}; ${refusal.hint}` }
        : { address: d.address, driver: d.driver!, fix: bindFix(d.address) },
    );
  // A non-PCI member on a driver holds DMA ownership just the same; vfiokit
  // cannot move it, so the fix is unbinding it by hand.
  for (const m of group.otherDevices ?? []) {
    if (m.driver !== undefined && !DRIVER_MANAGED_DMA.has(m.driver) && !m.driver.startsWith('vfio-')) {
      blocking.push({ address: m.name, driver: m.driver, fix: `echo ${m.name} > /sys/bus/${m.bus ?? 'platform'}/drivers/${m.driver}/unbind` });
    }
  }
  return {
    group: group.id,
    viable: blocking.length === 0,
    rule,
    blocking,
    assignable: group.devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.address),
    bystanders: group.devices.filter((d) => d.driver !== 'vfio-pci' && allowsViability(d, rule)).map((d) => d.address),
  };
}

/** One sentence naming what blocks a group, with the fix; empty for a viable group. */
export function describeViability(report: ViabilityReport): string {
  if (report.viable) return `group ${report.group} is viable`;
  const held = report.blocking.map((b) => `${b.address} is bound to ${b.driver}`).join(', ');
  const { fix, bindRefused } = report.blocking[0]!;
  if (bindRefused !== undefined) return `group ${report.group} is not viable: ${held}; 'vfiokit bind' would refuse it: ${bindRefused}`;
  const waives = fix.includes(' --force ') ? ', waiving a safety rule: only if the host can do without the device' : '';
  return `group ${report.group} is not viable: ${held}; run '${fix}'${fix.startsWith('vfiokit bind') ? ` to move the whole group to vfio-pci${waives}` : ''}`;
}

/** Throw GroupNotViableError unless the group is viable. */
export function assertViable(model: HostModel, group: IommuGroup): ViabilityReport {
  const report = checkViability(model, group);
  if (!report.viable) {
    throw new GroupNotViableError(report.group, describeViability(report), report.blocking[0]!.fix);
  }
  return report;
}
