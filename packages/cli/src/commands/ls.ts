// `vfiokit ls`: the host's IOMMU groups as a tree, each marked viable or not,
// the way an operator scans for what can be assigned.
import { Command } from 'commander';
import { checkViability, findProtectedDevices, listPersisted, type PersistedDevice, type SafetyFinding, type HostModel, type IommuGroup, type ViabilityReport } from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { isColorSupported } from 'picocolors';
import { deviceJson, deviceLine, iommuLine } from '../describe';
import { invalidInput } from '../errors';
import { filterGroups, groupMark as stateMark, lsLines, matchesIds, type LsFilter, type TextStyle } from '../ls-format';

export function groupMark(report: ViabilityReport): string {
  if (report.viable) return report.assignable.length > 0 ? 'viable, on vfio-pci' : 'viable';
  return `NOT VIABLE: ${report.blocking.map((b) => `${b.address} on ${b.driver}`).join(', ')}`;
}

export function groupTree(group: IommuGroup, report: ViabilityReport): string[] {
  const lines = [`group ${group.id}${group.name ? ` (${group.name})` : ''}  [${groupMark(report)}]`];
  const blocking = new Set(report.blocking.map((b) => b.address));
  group.devices.forEach((d, i) => {
    const last = i === group.devices.length - 1;
    lines.push(`${last ? '└─' : '├─'} ${deviceLine(d)}${blocking.has(d.address) ? '  <- blocks' : ''}`);
  });
  return lines;
}

export function lsJson(model: HostModel, safety: readonly SafetyFinding[] = [], persisted: readonly PersistedDevice[] = []) {
  const boot = (address: string) => {
    const p = persisted.find((x) => x.address === address);
    return p ? { driver: 'vfio-pci', method: p.method, file: p.file } : null;
  };
  const grouped = new Set(model.groups.flatMap((g) => g.devices.map((d) => d.address)));
  return {
    platform: model.platform,
    kernelRelease: model.kernelRelease ?? null,
    iommu: model.iommu,
    vfioPciLoaded: model.vfioPciLoaded,
    groups: model.groups.map((g) => {
      const r = checkViability(model, g, safety);
      return {
        id: g.id,
        name: g.name ?? null,
        pe: g.pe ?? null,
        viable: r.viable,
        blocking: r.blocking,
        state: stateMark(model, g, safety).state,
        devices: g.devices.map((d) => ({ ...deviceJson(d), atBoot: boot(d.address) })),
      };
    }),
    ungrouped: model.devices.filter((d) => !grouped.has(d.address)).map(deviceJson),
  };
}

export function lsText(model: HostModel, source: string, safety: readonly SafetyFinding[] = [], filter: LsFilter = {}, style: TextStyle = { color: false }, persisted: readonly PersistedDevice[] = []): string {
  const lines = [`host: ${source}`, `IOMMU: ${iommuLine(model)}`, `vfio-pci: ${model.vfioPciLoaded ? 'loaded' : "not loaded (modprobe vfio-pci)"}`, ''];
  lines.push(...lsLines(model, filterGroups(model, filter), safety, style, persisted));
  const grouped = new Set(model.groups.flatMap((g) => g.devices.map((d) => d.address)));
  const ungrouped = model.devices.filter((d) => !grouped.has(d.address) && matchesIds(d, filter.ids));
  if (ungrouped.length > 0 && filter.groups === undefined) {
    lines.push(`no IOMMU group (cannot be assigned):`);
    ungrouped.forEach((d, i) => lines.push(`${i === ungrouped.length - 1 ? '└─' : '├─'} ${deviceLine(d)}`));
  }
  return lines.join('\n').trimEnd();
}

/** `-d 10de:`, `-d :1b80`, `-d 10de:1b80`, as lspci -d takes them. */
export function parseIdFilter(text: string): NonNullable<LsFilter['ids']> {
  const m = /^([0-9a-f]{1,4}|\*)?:([0-9a-f]{1,4}|\*)?$/i.exec(text.trim());
  if (!m) throw invalidInput(`-d ${text}: not vendor:device IDs`, 'write it as lspci -d does: 10de:1b80, 10de: or :1b80');
  const part = (p: string | undefined) => (p === undefined || p === '*' ? undefined : parseInt(p, 16));
  const vendor = part(m[1]);
  const device = part(m[2]);
  return { ...(vendor === undefined ? {} : { vendor }), ...(device === undefined ? {} : { device }) };
}

export function lsCommand(state: RunState): Command {
  const cmd = new Command('ls')
    .description('list IOMMU groups and their devices like lspci -nnk, each group marked with what assigning it takes (ready, movable by bind, protected by a safety rule, host bridge only)')
    .option('-d, --ids <vendor:device>', 'only groups with a device of these IDs (10de:1b80, 10de: or :1b80)')
    .option('--group <n...>', 'only these IOMMU groups')
    .action(
      action(state, async (ctx, opts: { ids?: string; group?: string[] }) => {
        const filter: LsFilter = {
          ...(opts.ids === undefined ? {} : { ids: parseIdFilter(opts.ids) }),
          ...(opts.group === undefined
            ? {}
            : {
                groups: opts.group.map((g) => {
                  if (!/^\d+$/.test(g)) throw invalidInput(`--group ${g}: not an IOMMU group number`, "list the groups with 'vfiokit ls'");
                  return Number(g);
                }),
              }),
        };
        const model = await ctx.discover();
        const host = await ctx.host();
        const safety = findProtectedDevices(host.fs, model);
        const kept = new Set(filterGroups(model, filter).map((g) => g.id));
        const persisted = listPersisted(host.fs);
        const json = lsJson(model, safety, persisted);
        const filtered = filter.ids === undefined && filter.groups === undefined ? json : { ...json, groups: json.groups.filter((g) => kept.has(g.id)) };
        // picocolors decides colour itself (NO_COLOR, FORCE_COLOR, a terminal); the width is the terminal's.
        const style: TextStyle = { color: isColorSupported && process.stdout.isTTY === true, ...(process.stdout.isTTY && process.stdout.columns ? { width: process.stdout.columns } : {}) };
        ctx.out.result(filtered, () => lsText(model, host.description, safety, filter, style, persisted));
      }),
    );
  return withRealHostExamples(withExamples(cmd, 'vfiokit --mock workstation ls', 'vfiokit --mock workstation ls -d 1b21:', 'vfiokit --mock workstation ls --group 1 11 --json'), 'vfiokit ls');
}
