// MSI isolation: whether a device given to a guest can be kept from forging
// interrupts. An MSI is a plain DMA write to the interrupt window; unless the
// host isolates MSIs (x86: interrupt remapping, by VT-d or AMD-Vi; Arm: the
// GIC's ITS, which tags each MSI with the device's ID), a device can write
// any vector of any CPU. vfio_iommu_type1 therefore refuses a container's
// IOMMU without it: vfio_iommu_type1_attach_group checks
// irq_domain_check_msi_remap() || iommu_capable(IOMMU_CAP_INTR_REMAP), and
// fails VFIO_SET_IOMMU with EPERM, logging "No interrupt remapping support.
// Use the module param "allow_unsafe_interrupts" ...", unless that module
// parameter is set (drivers/vfio/vfio_iommu_type1.c, 6.1).
//
// What the kernel exposes, and what discovery reads (measured in the lab,
// packages/testkit/src/lab: x86-amd, x86-noir, arm64):
// - /proc/interrupts names each interrupt's chip. Remapped x86 interrupts
//   go through `IR-IO-APIC`, `IR-PCI-MSI`; without remapping the same lines
//   say `IO-APIC`, `PCI-MSI`. On Arm, MSIs through an ITS say `ITS-MSI`
//   (or `ITS-pMSI`); through a GICv2m frame plainly `MSI` (the lab's arm64
//   boots, 6.1: `21: 0 0 ITS-MSI 65536 Edge shpchp` against `MSI 65536 Edge`).
// - VT-d's extended capability register (/sys/class/iommu/dmar*/intel-iommu/ecap)
//   has bit 3 (IR) when the hardware can remap at all (QEMU's intremap=off
//   clears it: ecap 0xf42 in the lab).
// - /proc/cmdline: `intremap=off` turns remapping off on either vendor
//   (drivers/iommu/irq_remapping.c, setup_irqremap).
// - Arm device tree: an ITS is a node compatible with "arm,gic-v3-its".
// - /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts (Y/N),
//   present while the module is loaded.
import type { HostFs } from './seam';
import type { HostPlatform } from './model';

/** What the host does about MSIs from assigned devices. */
export interface MsiIsolation {
  /** `isolated`: VFIO gets its IOMMU; `none`: VFIO_SET_IOMMU fails with EPERM (unless allowed); `unknown`: nothing said either way. */
  readonly state: 'isolated' | 'none' | 'unknown';
  /** How the state was decided, in the kernel's own terms (for messages and --json). */
  readonly evidence: readonly string[];
  /** vfio_iommu_type1's `allow_unsafe_interrupts`; absent when the module is not loaded. */
  readonly allowUnsafeInterrupts?: boolean;
}

const IR_CHIP = /\bIR-(IO-APIC|PCI-MSI\S*|PCI-MSIX\S*|HPET\S*)\b/;
const PLAIN_X86_CHIP = /(^|\s)(IO-APIC|PCI-MSI\S*)\s/m;
const ITS_CHIP = /\bITS-(p?MSI|fsl-mc-msi)\b/;
/** A GICv2m's MSIs: the chip column reads `MSI` (or GICv2m-*), then the hwirq and `Edge`. */
const ARM_NON_ITS_MSI = /\s(MSI|GICv2m-PCI-MSI|GICv2m-MSI)\s+\d+\s+Edge\b/;
const VTD_ECAP_IR = 1n << 3n;

function readChips(host: HostFs): string {
  return host.readText('/proc/interrupts') ?? '';
}

/** The device-tree node under the GIC (`intc@...`) compatible with `compatible`. */
function deviceTreeNode(host: HostFs, compatible: string): string | undefined {
  const base = '/sys/firmware/devicetree/base';
  for (const node of host.list(base)) {
    if (!node.startsWith('intc')) continue;
    for (const child of host.list(`${base}/${node}`)) {
      if (host.readText(`${base}/${node}/${child}/compatible`)?.split('\0').includes(compatible)) return `${node}/${child}`;
    }
  }
  return undefined;
}

/** Reads the host's MSI isolation the way its platform exposes it. */
export function readMsiIsolation(host: HostFs, platform: HostPlatform, units: readonly string[]): MsiIsolation {
  const param = host.readText('/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts')?.trim();
  const allow = param === undefined ? {} : { allowUnsafeInterrupts: param === 'Y' || param === '1' };
  const chips = readChips(host);
  const evidence: string[] = [];
  if (platform === 'x86') {
    const ir = IR_CHIP.exec(chips)?.[0];
    if (ir !== undefined) return { state: 'isolated', evidence: [`/proc/interrupts: interrupts go through the remapped chip ${ir}`], ...allow };
    const cmdline = host.readText('/proc/cmdline') ?? '';
    if (/(^|\s)intremap=off(\s|$)/.test(cmdline)) evidence.push('the kernel command line has intremap=off');
    for (const u of units.filter((x) => /^dmar\d+$/.test(x))) {
      const ecap = host.readText(`/sys/class/iommu/${u}/intel-iommu/ecap`)?.trim();
      if (ecap !== undefined && /^(0x)?[0-9a-fA-F]+$/.test(ecap) && (BigInt(ecap.startsWith('0x') ? ecap : `0x${ecap}`) & VTD_ECAP_IR) === 0n) {
        evidence.push(`${u}'s extended capability register (ecap ${ecap}) has no interrupt remapping (bit 3, IR)`);
      }
    }
    const plain = PLAIN_X86_CHIP.exec(chips)?.[2];
    if (plain !== undefined) evidence.unshift(`/proc/interrupts: interrupts go through ${plain}, not IR-${plain} (no interrupt remapping)`);
    return { state: plain !== undefined || evidence.length > 0 ? 'none' : 'unknown', evidence, ...allow };
  }
  if (platform === 'arm') {
    const its = ITS_CHIP.exec(chips)?.[0];
    if (its !== undefined) return { state: 'isolated', evidence: [`/proc/interrupts: MSIs go through the GIC ITS (${its})`], ...allow };
    const dt = deviceTreeNode(host, 'arm,gic-v3-its');
    if (dt !== undefined) return { state: 'isolated', evidence: [`the device tree has a GIC ITS (${dt}, arm,gic-v3-its)`], ...allow };
    const other = ARM_NON_ITS_MSI.exec(chips)?.[1];
    if (other !== undefined) evidence.push(`/proc/interrupts: MSIs go through the ${other} chip, not ITS-MSI`);
    const v2m = deviceTreeNode(host, 'arm,gic-v2m-frame');
    if (v2m !== undefined) evidence.push(`the device tree has a GICv2m frame (${v2m}) and no ITS: it cannot tell devices' MSIs apart`);
    return { state: evidence.length > 0 ? 'none' : 'unknown', evidence, ...allow };
  }
  // POWER isolates MSIs in its PEs (the sPAPR TCE driver does not ask).
  return { state: platform === 'power' ? 'isolated' : 'unknown', evidence, ...allow };
}

/** What to tell an operator about MSI isolation: a refusal, a warning, or nothing. */
export interface MsiIsolationVerdict {
  readonly ok: boolean;
  /** `refusal`: VFIO_SET_IOMMU will fail with EPERM; `warning`: it works, unsafely. */
  readonly severity?: 'refusal' | 'warning';
  /** `no interrupt remapping` (x86) or `no MSI isolation (no GIC ITS)` (Arm), then why. */
  readonly message: string;
  /** Each way out, stated plainly (the first is the safe one). */
  readonly fixes: readonly string[];
}

/** The module parameter's meaning, said once for every message that names it. */
const UNSAFE_MEANING =
  'the assigned device can then forge MSIs (an MSI is a DMA write) and raise any interrupt on the host: a guest that controls the device can attack the host; use it only for a device and guest you trust';

/** The verdict `vfiokit check` and `plan` report before any attach. */
export function msiIsolationVerdict(platform: HostPlatform, m: MsiIsolation): MsiIsolationVerdict {
  const arm = platform === 'arm';
  const what = arm ? 'no MSI isolation (no GIC ITS)' : 'no interrupt remapping';
  if (m.state === 'isolated') {
    return { ok: true, message: `${arm ? 'MSIs are isolated by the GIC ITS' : 'interrupt remapping is on'} (${m.evidence.join('; ')})`, fixes: [] };
  }
  if (m.state === 'unknown') {
    return { ok: true, message: `MSI isolation could not be read (no ${arm ? 'ITS or GICv2m' : 'IO-APIC or PCI-MSI'} chip in /proc/interrupts); VFIO_SET_IOMMU will tell`, fixes: [] };
  }
  const safe = arm
    ? 'use a host whose GIC has an ITS (GICv3 or GICv4 with the ITS enabled in the firmware or device tree): the ITS tells devices\' MSIs apart'
    : 'turn interrupt remapping on: enable VT-d / AMD-Vi (IOMMU) with interrupt remapping in the firmware, and remove intremap=off from the kernel command line if it is there; then reboot';
  const unsafe = `or load vfio_iommu_type1 with allow_unsafe_interrupts=1 (modprobe vfio_iommu_type1 allow_unsafe_interrupts=1, or 'options vfio_iommu_type1 allow_unsafe_interrupts=1' in /etc/modprobe.d/): ${UNSAFE_MEANING}`;
  const why = m.evidence.length > 0 ? ` (${m.evidence.join('; ')})` : '';
  if (m.allowUnsafeInterrupts === true) {
    return {
      ok: true,
      severity: 'warning',
      message: `${what}${why}; VFIO works only because vfio_iommu_type1.allow_unsafe_interrupts is Y: ${UNSAFE_MEANING}`,
      fixes: [safe],
    };
  }
  return {
    ok: false,
    severity: 'refusal',
    message: `${what}${why}: vfio_iommu_type1 refuses the container's IOMMU (VFIO_SET_IOMMU fails with EPERM; dmesg says "No interrupt remapping support")`,
    fixes: [safe, unsafe],
  };
}
