// `vfiokit persist` / `unpersist`: whole groups that go to vfio-pci at every
// boot, before their host drivers claim them (driverctl's set-override /
// unset-override), through a udev rule or modprobe.d, whichever the host
// supports; core's persist module decides and says why. Neither changes the
// running host: `bind` does that.
import { Command, Option } from 'commander';
import { createConfigWriter, discoverHost, persistGroup, resolveGroup, unpersistGroup, type PersistMethod, type PersistPlan, type UnpersistResult } from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { collectRule, safetyOverride } from './bind';

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

export function persistText(p: PersistPlan, dryRun: boolean): string {
  const lines = [`group ${p.group}: ${dryRun ? 'would go' : 'goes'} to vfio-pci at boot, by ${p.method} (${p.why})`];
  for (const d of p.devices) lines.push(`  ${d.address}  ${hex4(d.vendorId)}:${hex4(d.deviceId)}  now ${d.driver ?? 'no driver'}`);
  for (const f of p.files) lines.push(`  ${dryRun ? 'would write' : f.text === '' ? 'removed' : 'wrote'} ${f.file}`);
  for (const n of p.notes) lines.push(`  note: ${n}`);
  if (p.devices.some((d) => d.driver !== 'vfio-pci')) lines.push(`  until then the devices stay where they are; 'vfiokit bind ${p.group}' moves them now`);
  return lines.join('\n');
}

export function unpersistText(r: UnpersistResult, dryRun: boolean): string {
  if (r.removed.length === 0) return `group ${r.group}: nothing of it goes to vfio-pci at boot`;
  const lines = [`group ${r.group}: ${dryRun ? 'would no longer go' : 'no longer goes'} to vfio-pci at boot`];
  for (const d of r.removed) lines.push(`  ${d.address}  (${d.method}, ${d.file})`);
  for (const f of r.files) lines.push(`  ${dryRun ? 'would' : ''}${f.text === '' ? `${dryRun ? ' remove' : 'removed'}` : `${dryRun ? ' rewrite' : 'rewrote'}`} ${f.file}`);
  return lines.join('\n');
}

/** The distinct groups the targets name, in the order first named. */
function groupIds(model: ReturnType<typeof discoverHost>, targets: readonly string[]): number[] {
  return [...new Set(targets.map((t) => resolveGroup(model, t).id))];
}

export function persistCommand(state: RunState): Command {
  const cmd = new Command('persist')
    .description("make whole IOMMU groups go to vfio-pci at every boot, before their host drivers claim them (as driverctl set-override does): a udev rule setting driver_override, or modprobe.d's vfio-pci ids= and softdep when the host has no udev")
    .argument('<targets...>', 'PCI addresses or IOMMU group numbers')
    .addOption(new Option('--method <method>', 'how (default: udev when the host has it, else modprobe)').choices(['udev', 'modprobe']))
    .addOption(new Option('--force <rule>', 'persist a group a host-safety rule protects; repeatable').argParser(collectRule))
    .option('-n, --dry-run', 'show what would be written and write nothing', false)
    .action(
      action(state, async (ctx, targets: string[], opts: { method?: PersistMethod; force?: string[]; dryRun: boolean }) => {
        const host = await ctx.host();
        const model = discoverHost(host.fs);
        const writer = createConfigWriter(host.configRoot);
        const force = safetyOverride(opts.force);
        // Decide every group before writing any: a refusal leaves the host's configuration as it was.
        const ids = groupIds(model, targets);
        const together = ids.flatMap((id) => model.groups.find((g) => g.id === id)!.devices.map((d) => d.address));
        const options = { ...(opts.method ? { method: opts.method } : {}), force, together };
        for (const id of ids) persistGroup(host.fs, model, writer, id, { ...options, dryRun: true });
        const done = ids.map((id) => persistGroup(host.fs, model, writer, id, { ...options, dryRun: opts.dryRun }));
        ctx.out.result({ dryRun: opts.dryRun, groups: done }, () => done.map((p) => persistText(p, opts.dryRun)).join('\n'));
      }),
    );
  return withRealHostExamples(
    withExamples(
      cmd,
      'vfiokit --mock workstation persist --dry-run 11',
      'vfiokit --mock workstation --mock-dir ws persist 11 && vfiokit --mock workstation --mock-dir ws ls --group 11',
      'vfiokit --mock workstation persist --method modprobe 0000:04:00.0',
    ),
    'vfiokit persist 0000:04:00.0',
  );
}

export function unpersistCommand(state: RunState): Command {
  const cmd = new Command('unpersist')
    .description('stop whole IOMMU groups going to vfio-pci at boot: remove what persist wrote, whichever way it wrote it')
    .argument('<targets...>', 'PCI addresses or IOMMU group numbers')
    .option('-n, --dry-run', 'show what would be removed and write nothing', false)
    .action(
      action(state, async (ctx, targets: string[], opts: { dryRun: boolean }) => {
        const host = await ctx.host();
        const model = discoverHost(host.fs);
        const writer = createConfigWriter(host.configRoot);
        const done = groupIds(model, targets).map((id) => unpersistGroup(host.fs, model, writer, id, { dryRun: opts.dryRun }));
        ctx.out.result({ dryRun: opts.dryRun, groups: done }, () => done.map((r) => unpersistText(r, opts.dryRun)).join('\n'));
      }),
    );
  return withRealHostExamples(
    withExamples(cmd, 'vfiokit --mock workstation --mock-dir ws persist 11 && vfiokit --mock workstation --mock-dir ws unpersist 11'),
    'vfiokit unpersist 0000:04:00.0',
  );
}
