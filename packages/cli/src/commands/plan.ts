// `vfiokit plan GUEST.yaml`: read a guest spec, plan it on this host with
// core's planAssignment, and print the plan as text, JSON or QEMU arguments.
// A plan with refusals prints what it could decide and exits 5.
import { Command, Option } from 'commander';
import {
  assertPlanOk,
  discoverHost,
  findProtectedDevices,
  memlockFromHost,
  planAssignment,
  type GuestPciDomain,
  type GuestSpec,
  type HostFs,
  type MemlockLimit,
  type Plan,
} from '@vfiokit/core';
import { probeQemuVersion } from '@vfiokit/qemu-bridge';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { invalidInput } from '../errors';
import { formatSize, hex, parseSize } from '../sizes';
import { collectRule, safetyOverride } from './bind';
import type { CommandContext } from '../context';

export type PlanFormat = 'text' | 'json' | 'qemu-args';

/** The VMM's RLIMIT_MEMLOCK: as given, or this process's (the VMM is usually started like vfiokit is). */
export function memlockOf(fs: HostFs, option: string | undefined): MemlockLimit {
  if (option === 'unlimited') return { soft: 'unlimited' };
  if (option !== undefined) return { soft: parseSize(option, '--memlock') };
  return memlockFromHost(fs);
}

export interface PlanOptions {
  readonly force?: string[];
  readonly memlock?: string;
  /** The QEMU the guest will run (default qemu-system-x86_64): its version decides whether iommufd can be used. */
  readonly qemu?: string;
}

/** The QEMU a q35 guest runs unless --qemu names another. */
export const DEFAULT_QEMU = 'qemu-system-x86_64';

/** Plan a spec on the host behind `fs`; the plan is returned whether or not it is ok. */
export function planOnHost(fs: HostFs, spec: GuestSpec, opts: PlanOptions): Plan {
  const model = discoverHost(fs);
  return planAssignment(model, spec, {
    protectedDevices: findProtectedDevices(fs, model),
    force: safetyOverride(opts.force),
    memlock: memlockOf(fs, opts.memlock),
    // Asked only when the host offers iommufd (core's chooseBackend).
    vmm: () => probeQemuVersion(opts.qemu ?? DEFAULT_QEMU),
  });
}

/** Read a spec file and plan it on the command's host. */
export async function planFromFile(ctx: CommandContext, file: string, opts: PlanOptions): Promise<Plan> {
  // yaml and zod load only for the commands that read a spec.
  const { readGuestSpec } = await import('../guest-spec');
  const spec = readGuestSpec(file);
  return planOnHost((await ctx.host()).fs, spec, opts);
}

function domainLines(d: GuestPciDomain): string[] {
  const head =
    d.kind === 'pcie-root-port'
      ? `pcie-root-port ${d.id} (chassis ${d.chassis}) <- group ${d.group}`
      : `spapr-pci-host-bridge ${d.bridge.id} (index ${d.bridge.index}, LIOBNs ${hex(BigInt(d.bridge.liobn32))}/${hex(BigInt(d.bridge.liobn64))}) <- PE group ${d.group}`;
  const lines = [`  ${head}`];
  for (const slot of d.devices) {
    for (const f of slot.functions) {
      const at = `${slot.guestDevice.toString(16).padStart(2, '0')}.${f.guestFunction}`;
      lines.push(`    ${at} = host ${f.hostAddress}${slot.multifunction && f.guestFunction === 0 ? '  (multifunction)' : ''}`);
    }
  }
  return lines;
}

const POLICY_TEXT = {
  identity: 'identity: all guest RAM mapped at IOVA = GPA for the guest\'s whole life',
  shadow: 'shadow: all RAM at IOVA = GPA until the guest enables its IOMMU, then exactly what the guest maps',
  'spapr-tce': 'sPAPR TCE: the guest\'s TCE windows, one container per PE',
} as const;

/** The plan for people; `qemu` is the readable command line, for a plan that has one. */
export function planText(plan: Plan, qemu?: string): string {
  const s = plan.spec;
  const refusals = plan.findings.filter((f) => f.kind === 'refusal');
  const lines = [
    `guest ${s.name}: ${s.machine}, ${formatSize(s.memoryBytes)} RAM, ${s.cpus} vCPU${s.cpus === 1 ? '' : 's'}, guest IOMMU ${s.iommu}`,
    `status: ${refusals.length > 0 ? `REFUSED (${refusals.length} reason${refusals.length === 1 ? '' : 's'} below)` : plan.actions.length > 0 ? 'ready once the actions below are done' : 'ready'}`,
    '',
    'groups (each assigned whole):',
  ];
  if (plan.groups.length === 0) lines.push('  none');
  for (const g of plan.groups) {
    lines.push(`  group ${g.id}${g.viable ? '' : ' (not viable yet)'}`);
    for (const f of g.functions) {
      const who = f.role === 'requested' ? `requested as ${f.requestedAs}` : `companion: shares group ${g.id}`;
      lines.push(`    ${f.address}  ${f.vendorId.toString(16).padStart(4, '0')}:${f.deviceId.toString(16).padStart(4, '0')}  ${f.driver ?? 'no driver'}  ${who}`);
    }
    for (const b of g.hostBridges) lines.push(`    ${b}  bridge: stays with the host`);
  }
  lines.push('', 'guest PCI:');
  if (plan.domains.length === 0) lines.push('  none');
  for (const d of plan.domains) lines.push(...domainLines(d));
  const topo = plan.dma.topology;
  const limit = topo.memlock ? (topo.memlock.soft === 'unlimited' ? 'unlimited' : formatSize(topo.memlock.soft)) : 'not checked';
  lines.push('', `passthrough: ${plan.backend.backend === 'iommufd' ? 'iommufd (-object iommufd, each device by its VFIO cdev)' : 'VFIO container and groups'}`);
  for (const r of plan.backend.reasons) lines.push(`  ${plan.backend.backend === 'iommufd' ? 'because' : 'not iommufd:'} ${r}`);
  lines.push('', 'DMA:', `  policy      ${POLICY_TEXT[plan.dma.policy]}`);
  lines.push(`  guest RAM   ${plan.guest.memory.regions.map((r) => `${r.name} ${hex(r.gpa)}-${hex(r.gpa + r.size - 1n)}`).join(', ')}`);
  for (const [i, c] of topo.containers.entries()) {
    lines.push(`  ${i === 0 ? 'containers ' : '           '} ${i + 1}: group${c.groups.length === 1 ? '' : 's'} ${c.groups.join(', ')}, holds ${c.holds}, pins up to ${formatSize(c.pinnedBytes)}`);
  }
  for (const w of plan.dma.tceWindows ?? []) {
    for (const win of w.windows) {
      lines.push(`  window      ${w.bridge} #${win.index}: ${hex(win.start)}+${formatSize(win.size)}, ${formatSize(1n << BigInt(win.pageShift))} TCEs (created by the ${win.createdBy})`);
    }
  }
  lines.push(`  pinned      ${formatSize(topo.pinnedBytes)} at most; RLIMIT_MEMLOCK ${limit}${topo.memlock?.capIpcLock ? ' (CAP_IPC_LOCK: not enforced)' : ''} -> ${topo.fitsMemlock ? 'fits' : 'TOO LOW'}`);
  if (plan.findings.length > 0) {
    lines.push('', 'findings:');
    for (const f of plan.findings) {
      lines.push(`  ${f.kind.padEnd(8)} ${f.subject}: ${f.message}`);
      if (f.fix) lines.push(`  ${''.padEnd(8)} fix: ${f.fix}`);
    }
  }
  if (qemu !== undefined) lines.push('', 'QEMU command line:', `  ${qemu}`);
  if (plan.actions.length > 0) lines.push('', 'before starting the guest, run:', ...plan.actions.map((a) => `  ${a}`));
  return lines.join('\n');
}

export function planCommand(state: RunState): Command {
  const cmd = new Command('plan')
    .description('plan a guest from a YAML spec: whole IOMMU groups, guest PCI placement, DMA policy, pinned memory, QEMU arguments')
    .argument('<guest.yaml>', 'guest spec (see packages/cli/examples/*.yaml)')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['text', 'json', 'qemu-args']).default('text'))
    .addOption(new Option('--force <rule>', 'waive a host-safety rule for devices the plan detaches; repeatable').argParser(collectRule))
    .option('--memlock <size>', "the VMM's RLIMIT_MEMLOCK (8G, bytes, or unlimited); default: this process's")
    .option('--qmp <socket>', 'give the QEMU command line a QMP monitor on this UNIX socket (for attach/detach later)')
    .option('--spare-root-ports <n>', 'give the QEMU command line N empty pcie-root-ports for hot-plug (q35)')
    .option('--qemu <binary>', `the QEMU the guest will run; its version decides iommufd (8.2+) or the VFIO container (default ${DEFAULT_QEMU})`)
    .action(
      action(state, async (ctx, file: string, opts: PlanOptions & { format: PlanFormat; qmp?: string; spareRootPorts?: string }) => {
        const plan = await planFromFile(ctx, file, opts);
        // qemu-bridge loads only for the commands that talk to or about QEMU.
        const { qemuCommandLineOf: commandLineOf } = await import('../qemu-args');
        const spare = opts.spareRootPorts === undefined ? 0 : Number(opts.spareRootPorts);
        if (!Number.isInteger(spare) || spare < 0) throw invalidInput(`--spare-root-ports ${opts.spareRootPorts}: not a whole number`, 'e.g. --spare-root-ports 2');
        // The monitor and spare hot-plug ports are the VMM's choice, not the plan's.
        const qemuCommandLineOf = (p: Plan) =>
          commandLineOf(p, { ...(opts.qmp ? { qmp: { path: opts.qmp } } : {}), ...(spare > 0 ? { spareRootPorts: spare } : {}), ...(opts.qemu ? { binary: opts.qemu } : {}) });
        // --json turns text into JSON; qemu-args stays qemu-args (its JSON is the argv array).
        const format = ctx.globals.json && opts.format === 'text' ? 'json' : opts.format;
        if (format === 'qemu-args') {
          // Only a plan that can be carried out has a command line.
          assertPlanOk(plan);
          const cmdline = qemuCommandLineOf(plan);
          ctx.out.result({ argv: cmdline.argv, placements: cmdline.placements }, () => cmdline.readable);
          return;
        }
        if (format === 'json') ctx.out.printJson({ ...plan, qemu: plan.ok ? qemuCommandLineOf(plan).argv : null });
        else ctx.out.result(plan, () => planText(plan, plan.ok ? qemuCommandLineOf(plan).readable : undefined));
        assertPlanOk(plan);
      }),
    );
  return withRealHostExamples(
    withExamples(
      cmd,
      'vfiokit --mock workstation plan packages/cli/examples/usb-controller.yaml --memlock unlimited',
      'vfiokit --mock power8 plan packages/cli/examples/power8-tesla.yaml --memlock unlimited --format json',
      'vfiokit --mock sriov-server plan packages/cli/examples/sriov-vfs-viommu.yaml --memlock unlimited --format qemu-args',
    ),
    'vfiokit plan guest.yaml',
  );
}
