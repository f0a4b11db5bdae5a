// `vfiokit ls`: the host's IOMMU groups as a tree, each marked viable or not,
// the way an operator scans for what can be assigned.
import { Command } from 'commander';
import { checkViability, findProtectedDevices, type SafetyFinding, type HostModel, type IommuGroup, type ViabilityReport } from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { deviceJson, deviceLine, iommuLine } from '../describe';

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

export function lsJson(model: HostModel, safety: readonly SafetyFinding[] = []) {
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
        devices: g.devices.map(deviceJson),
      };
    }),
    ungrouped: model.devices.filter((d) => !grouped.has(d.address)).map(deviceJson),
  };
}

export function lsText(model: HostModel, source: string, safety: readonly SafetyFinding[] = []): string {
  const lines = [`host: ${source}`, `IOMMU: ${iommuLine(model)}`, `vfio-pci: ${model.vfioPciLoaded ? 'loaded' : "not loaded (modprobe vfio-pci)"}`, ''];
  for (const g of model.groups) lines.push(...groupTree(g, checkViability(model, g, safety)), '');
  const grouped = new Set(model.groups.flatMap((g) => g.devices.map((d) => d.address)));
  const ungrouped = model.devices.filter((d) => !grouped.has(d.address));
  if (ungrouped.length > 0) {
    lines.push(`no IOMMU group (cannot be assigned):`);
    ungrouped.forEach((d, i) => lines.push(`${i === ungrouped.length - 1 ? '└─' : '├─'} ${deviceLine(d)}`));
  }
  return lines.join('\n').trimEnd();
}

export function lsCommand(state: RunState): Command {
  const cmd = new Command('ls')
    .description('list IOMMU groups and their devices, each group marked viable or not')
    .action(
      action(state, async (ctx) => {
        const model = await ctx.discover();
        const host = await ctx.host();
        const safety = findProtectedDevices(host.fs, model);
        ctx.out.result(lsJson(model, safety), () => lsText(model, host.description, safety));
      }),
    );
  return withRealHostExamples(withExamples(cmd, 'vfiokit --mock workstation ls', 'vfiokit --mock workstation ls --json'), 'vfiokit ls');
}
