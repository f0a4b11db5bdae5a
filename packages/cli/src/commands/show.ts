// `vfiokit show ADDRESS|GROUP`: everything known about one device or group,
// including what blocks assigning it and the command that fixes it.
import { Command } from 'commander';
import {
  checkViability,
  describeViability,
  findDevice,
  findGroup,
  findProtectedDevices,
  type HostModel,
  type IommuGroup,
  type PciDevice,
  type SafetyFinding,
} from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { barLine, deviceJson, hexAddr, idsOf, nameOf, reservedRegionsJson } from '../describe';
import { groupTree } from './ls';

function field(name: string, value: string): string {
  return `  ${name.padEnd(17)}${value}`;
}

function regionLines(g: IommuGroup): string[] {
  if (g.reservedRegions.length === 0) return [field('reserved regions', 'none')];
  return g.reservedRegions.map((r, i) => field(i === 0 ? 'reserved regions' : '', `${hexAddr(r.start)}-${hexAddr(r.start + r.size - 1n)} ${r.type}`));
}

function safetyLines(findings: readonly SafetyFinding[]): string[] {
  return findings.map((f, i) => field(i === 0 ? 'host needs it' : '', `${f.detail} (rule '${f.rule}'; override: ${f.override})`));
}

function groupJson(model: HostModel, g: IommuGroup, safety: readonly SafetyFinding[]) {
  const r = checkViability(model, g, safety);
  const members = new Set(g.devices.map((d) => d.address));
  return {
    id: g.id,
    name: g.name ?? null,
    pe: g.pe ?? null,
    domainType: g.domainType ?? null,
    viability: { viable: r.viable, rule: r.rule, blocking: r.blocking, assignable: r.assignable, bystanders: r.bystanders, summary: describeViability(r) },
    reservedRegions: reservedRegionsJson(g),
    safety: safety.filter((f) => members.has(f.address)),
    devices: g.devices.map(deviceJson),
  };
}

function deviceText(model: HostModel, d: PciDevice, safety: readonly SafetyFinding[]): string {
  const lines = [`${d.address}  ${nameOf(d)}`];
  lines.push(field('ids', `${idsOf(d)}${d.subsystemVendorId !== undefined ? `  subsystem ${d.subsystemVendorId.toString(16).padStart(4, '0')}:${(d.subsystemDeviceId ?? 0).toString(16).padStart(4, '0')}` : ''}  class ${d.classCode.toString(16).padStart(6, '0')}`));
  lines.push(field('driver', `${d.driver ?? 'none'}${d.driverOverride ? `  (driver_override ${d.driverOverride})` : ''}`));
  lines.push(field('NUMA node', d.numaNode === undefined ? 'not reported' : String(d.numaNode)));
  lines.push(field('topology', `${d.upstream ? `behind ${d.upstream}, ` : ''}host bridge ${d.hostBridge}${d.pcieType ? `, PCIe ${d.pcieType}` : ''}`));
  if (d.acs) lines.push(field('ACS', JSON.stringify(d.acs)));
  d.bars.forEach((b, i) => lines.push(field(i === 0 ? 'BARs' : '', barLine(b))));
  if (d.resetMethods) lines.push(field('reset methods', d.resetMethods.join(', ')));
  if (d.sriov) lines.push(field('SR-IOV', `physical function: ${d.sriov.numVfs} of ${d.sriov.totalVfs} VFs enabled${d.sriov.virtualFunctions.length ? ` (${d.sriov.virtualFunctions.join(', ')})` : ''}`));
  if (d.physicalFunction) lines.push(field('SR-IOV', `virtual function of ${d.physicalFunction}`));
  lines.push(...safetyLines(safety.filter((f) => f.address === d.address)));
  if (d.iommuGroup === undefined) {
    lines.push(field('IOMMU group', model.iommu.present ? 'none' : 'none: this host has no IOMMU, so VFIO cannot take it'));
    return lines.join('\n');
  }
  const g = findGroup(model, d.iommuGroup);
  const r = checkViability(model, g, safety);
  lines.push(field('IOMMU group', `${g.id}${g.pe ? ` (PE ${g.pe.pe} of domain ${g.pe.domain})` : ''}, ${g.devices.length} device${g.devices.length === 1 ? '' : 's'}`));
  lines.push(field('viability', describeViability(r)));
  lines.push(...regionLines(g));
  return lines.join('\n');
}

function groupText(model: HostModel, g: IommuGroup, safety: readonly SafetyFinding[]): string {
  const r = checkViability(model, g, safety);
  const members = new Set(g.devices.map((d) => d.address));
  const lines = groupTree(g, r);
  lines.push(field('viability', describeViability(r)));
  lines.push(...regionLines(g));
  for (const f of safety.filter((x) => members.has(x.address))) lines.push(field('host needs', `${f.address}: ${f.detail} (override: ${f.override})`));
  return lines.join('\n');
}

export function showCommand(state: RunState): Command {
  const cmd = new Command('show')
    .description('show one device (by PCI address) or one IOMMU group (by number): driver, NUMA node, SR-IOV, reserved regions, what blocks assigning it')
    .argument('<target>', 'a PCI address (0000:01:00.0 or 01:00.0) or an IOMMU group number')
    .action(
      action(state, async (ctx, target: string) => {
        const model = await ctx.discover();
        const safety = findProtectedDevices((await ctx.host()).fs, model);
        if (/^\d+$/.test(target)) {
          const g = findGroup(model, Number(target));
          ctx.out.result({ group: groupJson(model, g, safety) }, () => groupText(model, g, safety));
          return;
        }
        const d = findDevice(model, target);
        const g = d.iommuGroup === undefined ? undefined : findGroup(model, d.iommuGroup);
        ctx.out.result(
          { device: deviceJson(d), safety: safety.filter((f) => f.address === d.address), group: g ? groupJson(model, g, safety) : null },
          () => deviceText(model, d, safety),
        );
      }),
    );
  return withRealHostExamples(withExamples(cmd, 'vfiokit --mock workstation show 0000:01:00.0', 'vfiokit --mock workstation show 1 --json'), 'vfiokit show 0000:01:00.0');
}
