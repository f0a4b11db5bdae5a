// `vfiokit bind` / `unbind`: move whole IOMMU groups to vfio-pci and back,
// through core's managed switch (driver_override + drivers_probe, original
// drivers remembered, rollback on failure). Several targets are one
// transaction: if a later group fails, the groups this run bound go back.
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  bindGroup,
  discoverHost,
  fileBindingStore,
  resolveGroup,
  SAFETY_RULES,
  unbindGroup,
  type BindOptions,
  type BindResult,
  type HostFs,
  type SafetyOverride,
  type SafetyRule,
  type UnbindResult,
} from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { invalidInput, refused } from '../errors';
import { hostBridgeOnly } from '../ls-format';
import type { CommandContext } from '../context';

/**
 * `--force RULE`, repeatable. A value that is no rule but a target
 * (`bind --force 01:00.0`) would otherwise be swallowed as the rule and the
 * run would fail on a missing target: say what --force takes instead.
 */
export function collectRule(value: string, previous: string[] = []): string[] {
  if (value !== 'all' && !(SAFETY_RULES as readonly string[]).includes(value) && /^(\d+|([0-9a-f]{1,8}:)?[0-9a-f]{1,2}:[0-9a-f]{1,2}\.[0-7])$/i.test(value)) {
    throw new InvalidArgumentError(
      `'${value}' is a device or group, not a rule: --force names the safety rule to waive (${SAFETY_RULES.join(', ')}, or all), e.g. --force console-display ${value}`,
    );
  }
  return [...previous, value];
}

export function safetyOverride(rules: readonly string[] | undefined): SafetyOverride {
  if (!rules || rules.length === 0) return false;
  if (rules.includes('all')) return true;
  for (const r of rules) {
    if (!(SAFETY_RULES as readonly string[]).includes(r)) {
      throw invalidInput(`--force ${r}: no such safety rule`, `use one of ${SAFETY_RULES.join(', ')}, or all`);
    }
  }
  return rules as readonly SafetyRule[];
}

/** The distinct groups the targets name, in the order first named. */
async function groupsOf(ctx: CommandContext, targets: readonly string[]): Promise<number[]> {
  const model = discoverHost((await ctx.host()).fs);
  const ids: number[] = [];
  for (const t of targets) {
    const group = resolveGroup(model, t);
    const id = group.id;
    // A host bridge has a type 0 header, so vfio-pci would take it; no guest can use one, and the host loses it.
    if (hostBridgeOnly(group)) {
      throw refused('BIND_BRIDGES_ONLY', `group ${id} holds only bridges (${group.devices.map((d) => d.address).join(', ')}): there is nothing in it to assign`, "pick a group with an endpoint device: see 'vfiokit ls'");
    }
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/**
 * Bind several groups as one transaction: if a later group fails, the groups
 * already moved go back before the error is reported, and only the devices
 * this call moved, so a device someone else (or an earlier run) had put on
 * vfio-pci stays there.
 */
export function bindGroups(fs: HostFs, groups: readonly number[], options: BindOptions): BindResult[] {
  const done: BindResult[] = [];
  try {
    for (const group of groups) done.push(bindGroup(fs, group, options));
  } catch (err) {
    for (const r of [...done].reverse()) {
      if (r.changes.length > 0) unbindGroup(fs, r.group, { store: options.store, onlyRecorded: true, devices: r.changes.map((c) => c.address) });
    }
    throw err;
  }
  return done;
}

export function bindText(r: BindResult): string {
  const lines = [`group ${r.group}: ${r.dryRun ? 'would move' : r.changes.length > 0 ? 'moved' : 'nothing to move'} to vfio-pci`];
  for (const d of r.plan.devices) {
    const from = d.driver ?? 'no driver';
    const what = {
      bind: `${from} -> vfio-pci`,
      'already-bound': 'already on vfio-pci',
      leave: `${from} (bridge: left as it is)`,
      detach: `${from} -> no driver (bridge: vfio-pci cannot take it)`,
    }[d.action];
    lines.push(`  ${d.address}  ${what}`);
  }
  for (const s of r.steps) lines.push(`  $ ${s}`);
  return lines.join('\n');
}

export function unbindText(r: UnbindResult): string {
  const lines = [`group ${r.group}: ${r.dryRun ? 'would give back' : r.changes.length > 0 ? 'gave back' : 'nothing on vfio-pci to give back'}`];
  for (const d of r.releases) {
    lines.push(`  ${d.address}  vfio-pci -> ${d.to ?? (d.recorded ? 'no driver (as before)' : "the kernel's choice (no record of its old driver)")}`);
  }
  for (const s of r.steps) lines.push(`  $ ${s}`);
  return lines.join('\n');
}

export function bindCommand(state: RunState): Command {
  const cmd = new Command('bind')
    .description('move the whole IOMMU group of each target to vfio-pci, remembering each device\'s driver; all or nothing')
    .argument('<targets...>', 'PCI addresses or IOMMU group numbers')
    .option('-n, --dry-run', 'show what would change and write nothing', false)
    .addOption(
      new Option('--force <rule>', `detach a device a host-safety rule protects (${SAFETY_RULES.join(', ')}, or all); repeatable`).argParser(collectRule),
    )
    .action(
      action(state, async (ctx, targets: string[], opts: { dryRun: boolean; force?: string[] }) => {
        const force = safetyOverride(opts.force);
        const host = await ctx.host();
        const store = fileBindingStore(host.stateDir);
        const done = bindGroups(host.fs, await groupsOf(ctx, targets), { store, force, dryRun: opts.dryRun });
        ctx.out.result({ dryRun: opts.dryRun, groups: done }, () => done.map(bindText).join('\n'));
      }),
    );
  return withRealHostExamples(
    withExamples(cmd, 'vfiokit --mock workstation bind 0000:04:00.0', 'vfiokit --mock workstation bind --dry-run 11', 'vfiokit --mock workstation bind --force console-display 0000:01:00.0'),
    'vfiokit bind 0000:04:00.0',
  );
}

export function unbindCommand(state: RunState): Command {
  const cmd = new Command('unbind')
    .description('give the whole IOMMU group of each target back to the drivers its devices had before bind')
    .argument('<targets...>', 'PCI addresses or IOMMU group numbers')
    .option('-n, --dry-run', 'show what would change and write nothing', false)
    .action(
      action(state, async (ctx, targets: string[], opts: { dryRun: boolean }) => {
        const host = await ctx.host();
        const store = fileBindingStore(host.stateDir);
        const done: UnbindResult[] = [];
        for (const group of await groupsOf(ctx, targets)) done.push(unbindGroup(host.fs, group, { store, dryRun: opts.dryRun }));
        ctx.out.result({ dryRun: opts.dryRun, groups: done }, () => done.map(unbindText).join('\n'));
      }),
    );
  return withRealHostExamples(
    withExamples(cmd, 'vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws unbind --dry-run 11 && vfiokit --mock workstation --mock-dir ws unbind 11'),
    'vfiokit unbind 0000:04:00.0',
  );
}
