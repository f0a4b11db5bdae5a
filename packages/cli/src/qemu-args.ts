// From core's Plan to qemu-bridge's VmDescription and on to QEMU's argv. The
// plan and the command line place devices by the same rules (a root port per
// host slot on q35, a host bridge per PE on pseries); `qemuCommandLineOf`
// checks that they agree device by device, so what `plan` prints is what QEMU
// is told.
import { buildCommandLine, type QemuCommandLine, type VmDescription } from '@vfiokit/qemu-bridge';
import type { Plan } from '@vfiokit/core';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';

const MiB = 1n << 20n;

export function vmDescriptionOf(plan: Plan, extra: Partial<VmDescription> = {}): VmDescription {
  const s = plan.spec;
  if (s.memoryBytes % MiB !== 0n) {
    throw new CliError('SPEC_MEMORY_NOT_MIB', `guest ${s.name} has ${s.memoryBytes} bytes of RAM; QEMU's -m takes whole MiB`, ExitCode.InvalidInput, 'give memory in M or G');
  }
  return {
    name: s.name,
    machine: s.machine,
    memoryMiB: Number(s.memoryBytes / MiB),
    cpus: s.cpus,
    // pseries' TCE translation is the machine's own, not a device.
    guestIommu: s.iommu === 'spapr-tce' ? 'none' : s.iommu,
    devices: plan.groups.flatMap((g) =>
      g.functions.map((f) => ({ host: f.address, group: g.id, ...(s.machine === 'pseries' ? { peDomain: g.id } : {}) })),
    ),
    // The plan chose iommufd: QEMU binds each device's cdev to one iommufd object.
    ...(plan.backend.backend === 'iommufd' ? { iommufd: {} } : {}),
    ...extra,
  };
}

/** Where the plan put each host function: `rp0` or `phb1.0`, with its guest function. */
function planned(plan: Plan): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of plan.domains) {
    const bus = d.kind === 'pcie-root-port' ? d.id : `${d.bridge.id}.0`;
    for (const slot of d.devices) for (const f of slot.functions) out.set(f.hostAddress, `${bus} ${slot.guestDevice}.${f.guestFunction}`);
  }
  return out;
}

export function qemuCommandLineOf(plan: Plan, extra: Partial<VmDescription> = {}): QemuCommandLine {
  const cmdline = buildCommandLine(vmDescriptionOf(plan, extra));
  const want = planned(plan);
  for (const p of cmdline.placements) {
    const got = `${p.bus} ${p.slot}.${p.function}`;
    if (want.get(p.host) !== got) {
      throw new CliError('PLAN_ARGV_MISMATCH', `the plan puts ${p.host} at ${want.get(p.host) ?? 'nowhere'} but the QEMU command line at ${got}`, ExitCode.Internal, 'this is a bug: report it with the guest spec');
    }
  }
  return cmdline;
}
