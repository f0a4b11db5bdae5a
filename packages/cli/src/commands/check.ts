// `vfiokit check ADDRESS...`: can these devices be assigned, and if not, what
// exactly to run. Read-only: it decides what `bind` and a VMM would run into
// (no IOMMU, vfio-pci missing, a group not viable, a safety rule, too little
// locked memory) without changing anything.
import { Command } from 'commander';
import {
  bindCommandFor,
  bindGroup,
  checkLockedMemory,
  fileBindingStore,
  isVfiokitError,
  checkViability,
  msiIsolationVerdict,
  describeViability,
  findDevice,
  findGroup,
  findProtectedDevices,
  planGroupBind,
  resolveGroup,
  chooseBackend,
  type HostFs,
  type HostModel,
  type VmmCapabilities,
} from '@vfiokit/core';
import { probeQemuVersion } from '@vfiokit/qemu-bridge';
import { DEFAULT_QEMU } from './plan';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { ExitCode } from '../exit-codes';
import { parseSize } from '../sizes';
import { invalidInput } from '../errors';

export interface CheckItem {
  readonly check: 'iommu' | 'msi' | 'vfio-pci' | 'viability' | 'safety' | 'bind' | 'memlock' | 'backend';
  readonly ok: boolean;
  readonly message: string;
  /** The command that fixes it, when something does. */
  readonly fix?: string;
}

export interface DeviceCheck {
  readonly address: string;
  readonly group: number | null;
  readonly ok: boolean;
  readonly checks: readonly CheckItem[];
}

/**
 * The device a target names: an address, or a group number (as show, bind
 * and attach take), which stands for its first device that is not a bridge:
 * every check but the IOMMU one is about the whole group anyway.
 */
function targetDevice(model: HostModel, target: string) {
  if (!/^\d+$/.test(target.trim())) return findDevice(model, target);
  const group = resolveGroup(model, target);
  return group.devices.find((d) => !d.isBridge) ?? group.devices[0]!;
}

/** Every check for one device, in the order an operator would fix them. */
/**
 * Which way QEMU would take the device: iommufd (by its cdev) when the host
 * and QEMU offer it, else the VFIO container, saying why. Never a failure:
 * the container serves every host vfiokit supports.
 */
export function backendCheck(model: HostModel, address: string, vmm: () => VmmCapabilities): CheckItem {
  const choice = chooseBackend(model, model.platform === 'power' ? 'pseries' : 'q35', vmm);
  if (choice.backend === 'container') return { check: 'backend', ok: true, message: `VFIO container and group, not iommufd: ${choice.reasons.join('; ')}` };
  const cdev = model.devices.find((d) => d.address === address)?.vfioCdev;
  const by = cdev === undefined ? 'its VFIO cdev, which appears once it is bound to vfio-pci' : `/dev/vfio/devices/vfio${cdev}`;
  return { check: 'backend', ok: true, message: `iommufd: QEMU takes ${address} by ${by} (${choice.reasons.join('; ')})` };
}

export function checkDevice(fs: HostFs, model: HostModel, target: string, stateDir: string, vmm: () => VmmCapabilities = () => ({ probeError: 'no QEMU was asked' })): DeviceCheck {
  const device = targetDevice(model, target);
  const checks: CheckItem[] = [];
  if (device.iommuGroup === undefined) {
    checks.push({
      check: 'iommu',
      ok: false,
      message: model.iommu.present
        ? `${device.address} has no IOMMU group, so VFIO cannot take it`
        : 'this host has no IOMMU groups: the IOMMU is off or absent',
      fix: 'enable VT-d or AMD-Vi in the firmware, add intel_iommu=on to the kernel command line on Intel, and reboot',
    });
    return { address: device.address, group: null, ok: false, checks };
  }
  checks.push({ check: 'iommu', ok: true, message: `IOMMU group ${device.iommuGroup} (${model.iommu.kind ?? 'unknown'} IOMMU)` });
  // core's verdict: without MSI isolation VFIO_SET_IOMMU fails with EPERM.
  const msi = msiIsolationVerdict(model.platform, model.iommu.msiIsolation);
  checks.push({ check: 'msi', ok: msi.ok, message: msi.severity === 'warning' ? `WARNING: ${msi.message}` : msi.message, ...(msi.fixes.length > 0 ? { fix: msi.fixes.join('\n                 ') } : {}) });
  checks.push(
    model.vfioPciLoaded
      ? { check: 'vfio-pci', ok: true, message: 'vfio-pci is loaded' }
      : { check: 'vfio-pci', ok: false, message: 'vfio-pci is not loaded', fix: 'modprobe vfio-pci' },
  );
  checks.push(backendCheck(model, device.address, vmm));
  const group = findGroup(model, device.iommuGroup);
  const plan = planGroupBind(fs, model, group.id);
  const viability = checkViability(model, group, findProtectedDevices(fs, model));
  // The bind that would work: with the --force every rule in its way needs,
  // never a command that bind then refuses.
  const bind = bindCommandFor(fs, model, device.address);
  const bindFix = plan.refusals.length > 0 ? `${bind}   # only if the host can do without it` : bind;
  checks.push(
    viability.viable
      ? { check: 'viability', ok: true, message: describeViability(viability) }
      : { check: 'viability', ok: false, message: describeViability(viability), fix: bindFix },
  );
  if (plan.refusals.length === 0) {
    checks.push({ check: 'safety', ok: true, message: `no device of group ${group.id} that bind would detach is one the host needs` });
  }
  for (const f of plan.refusals) {
    checks.push({
      check: 'safety',
      ok: false,
      message: `${f.address}: ${f.detail} (rule '${f.rule}'; waived by ${f.override})`,
      fix: bindFix,
    });
  }
  // What else bind would refuse before writing (a PF whose VFs it would tear
  // down, say): core's bind in dry-run mode decides, writing nothing.
  if (plan.refusals.length === 0 && !viability.viable) {
    try {
      bindGroup(fs, group.id, { store: fileBindingStore(stateDir), dryRun: true });
    } catch (err) {
      if (!isVfiokitError(err)) throw err;
      checks.push({ check: 'bind', ok: false, message: err.message, ...(err.hint === undefined ? {} : { fix: err.hint }) });
      const viabilityCheck = checks.find((c) => c.check === 'viability');
      // `vfiokit bind` is then not the fix: the bind check says what is.
      if (viabilityCheck) checks[checks.indexOf(viabilityCheck)] = { check: 'viability', ok: false, message: viabilityCheck.message };
    }
  }
  return { address: device.address, group: group.id, ok: checks.every((c) => c.ok), checks };
}

/**
 * The locked-memory check for a guest of `memory` bytes with these devices'
 * groups (core's checkLockedMemory: all RAM pinned, once per container).
 */
export function memlockCheck(fs: HostFs, model: HostModel, results: readonly DeviceCheck[], memory: bigint, iommu: 'none' | 'present-disabled' | 'enabled'): CheckItem {
  const groups = new Set(results.map((r) => r.group).filter((g) => g !== null)).size;
  const report = checkLockedMemory(fs, { guestMemoryBytes: memory, groups: Math.max(1, groups), guestIommu: iommu, platform: model.platform });
  return report.ok
    ? { check: 'memlock', ok: true, message: report.reason }
    : { check: 'memlock', ok: false, message: report.reason, fix: report.hints.join('\n                 or ') };
}

export function checkText(results: readonly DeviceCheck[], memlock?: CheckItem): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.address}${r.group === null ? '' : ` (group ${r.group})`}: ${r.ok ? 'can be assigned' : 'cannot be assigned yet'}`);
    for (const c of r.checks) {
      lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.check.padEnd(10)}${c.message}`);
      if (c.fix) lines.push(`       ${''.padEnd(10)}fix: ${c.fix}`);
    }
  }
  if (memlock) {
    lines.push(`locked memory for the guest:`);
    lines.push(`  ${memlock.ok ? 'ok  ' : 'FAIL'} ${memlock.check.padEnd(10)}${memlock.message}`);
    if (memlock.fix) lines.push(`       ${''.padEnd(10)}fix: ${memlock.fix}`);
  }
  return lines.join('\n');
}

export function checkCommand(state: RunState): Command {
  const cmd = new Command('check')
    .description('check that devices can be assigned: IOMMU, vfio-pci, group viability, host-safety rules and (with --memory) locked memory; prints the command that fixes each problem')
    .argument('<targets...>', 'PCI addresses or IOMMU group numbers')
    .option('--memory <size>', 'also check RLIMIT_MEMLOCK for a guest with this much RAM (8G)')
    .option('--guest-iommu <state>', 'the guest IOMMU for --memory: none, present-disabled or enabled', 'none')
    .option('--qemu <binary>', `the QEMU the guest will run; its version decides iommufd (8.2+) or the VFIO container (default ${DEFAULT_QEMU})`)
    .action(
      action(state, async (ctx, addresses: string[], opts: { memory?: string; guestIommu: string; qemu?: string }) => {
        if (!['none', 'present-disabled', 'enabled'].includes(opts.guestIommu)) {
          throw invalidInput(`--guest-iommu ${opts.guestIommu}: not a guest IOMMU state`, 'use none, present-disabled or enabled');
        }
        const host = await ctx.host();
        const model = await ctx.discover();
        // QEMU is asked once, and only if the host offers iommufd.
        let probed: VmmCapabilities | undefined;
        const vmm = (): VmmCapabilities => (probed ??= probeQemuVersion(opts.qemu ?? DEFAULT_QEMU));
        const results = addresses.map((a) => checkDevice(host.fs, model, a, host.stateDir, vmm));
        const memlock =
          opts.memory === undefined
            ? undefined
            : memlockCheck(host.fs, model, results, parseSize(opts.memory, '--memory'), opts.guestIommu as 'none' | 'present-disabled' | 'enabled');
        const ok = results.every((r) => r.ok) && (memlock?.ok ?? true);
        ctx.out.result({ ok, devices: results, memlock: memlock ?? null }, () => checkText(results, memlock));
        return ok ? ExitCode.Ok : ExitCode.Refused;
      }),
    );
  return withRealHostExamples(
    withExamples(cmd, 'vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws check 11 --json'),
    'vfiokit check 0000:01:00.0',
    'vfiokit check --memory 16G 0000:01:00.0 11',
  );
}
