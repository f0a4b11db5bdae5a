// `ls` for people, laid out like `lspci -nnk`: one line per function with its
// class and IDs in brackets and its revision, its driver under it, grouped by
// IOMMU group, each group with one mark saying what assigning it takes.
// Colour comes from picocolors, which turns itself off for NO_COLOR and for
// output that is not a terminal; lines are cut to the terminal's width.
import { createColors } from 'picocolors';
import { checkViability, type HostModel, type IommuGroup, type PciDevice, type PersistedDevice, type SafetyFinding } from '@vfiokit/core';
import { hex4 } from './describe';

/** What assigning a group takes, as `ls` marks it. */
export type GroupState = 'ready' | 'viable' | 'movable' | 'protected' | 'fixed-first' | 'host-bridge-only';

export interface GroupMark {
  readonly state: GroupState;
  /** The text after the group number. */
  readonly text: string;
}

const HOST_BRIDGE_CLASS = 0x0600;

/** A group holding nothing but host bridges and PCI bridges: there is nothing in it a guest could use. */
export function hostBridgeOnly(group: IommuGroup): boolean {
  return group.devices.length > 0 && group.devices.every((d) => d.isBridge || d.classCode >> 8 === HOST_BRIDGE_CLASS);
}

/**
 * One mark per group, distinct for each thing to do: "ready" (on vfio-pci);
 * "movable" (host drivers that `vfiokit bind` moves); "protected" (a safety
 * rule: the host needs a device, and only --force moves it); "fix first"
 * (bind would refuse: an SR-IOV PF with VFs, a non-PCI member); "host bridge
 * only" (nothing to assign).
 */
export function groupMark(model: HostModel, group: IommuGroup, safety: readonly SafetyFinding[]): GroupMark {
  const r = checkViability(model, group, safety);
  if (hostBridgeOnly(group)) return { state: 'host-bridge-only', text: 'bridges only: nothing to assign' };
  const members = new Set(group.devices.map((d) => d.address));
  const movedByBind = new Set([...r.blocking.map((b) => b.address), ...group.devices.filter((d) => !d.isBridge && d.driver !== 'vfio-pci').map((d) => d.address)]);
  const rules = safety.filter((f) => members.has(f.address) && movedByBind.has(f.address));
  if (r.viable && group.devices.every((d) => d.isBridge || d.driver === 'vfio-pci')) return { state: 'ready', text: 'ready: on vfio-pci' };
  if (rules.length > 0) return { state: 'protected', text: `protected: ${[...new Set(rules.map((f) => f.rule))].join(', ')} (${[...new Set(rules.map((f) => f.override))].join(' ')} to move it)` };
  if (r.blocking.some((b) => b.bindRefused !== undefined || !b.fix.startsWith('vfiokit bind'))) return { state: 'fixed-first', text: `blocked: ${r.blocking[0]!.fix} first` };
  if (!r.viable) return { state: 'movable', text: `movable: ${r.blocking.map((b) => b.driver).filter((d, i, all) => all.indexOf(d) === i).join(', ')} (vfiokit bind ${group.id})` };
  return { state: 'viable', text: `viable, not on vfio-pci (vfiokit bind ${group.id})` };
}

/** `VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)`, as lspci -nn. */
export function lspciLine(d: PciDevice): string {
  const cls = `${d.names.className ?? 'Class'} [${hex4(d.classCode >> 8)}]`;
  const who = [d.names.vendor, d.names.device].filter((x) => x !== undefined).join(' ') || 'Device';
  const rev = d.revision !== undefined && d.revision !== 0 ? ` (rev ${d.revision.toString(16).padStart(2, '0')})` : '';
  return `${cls}: ${who} [${hex4(d.vendorId)}:${hex4(d.deviceId)}]${rev}`;
}

export interface LsFilter {
  /** `-d vendor:device`, either side may be empty or `*` (as lspci -d). */
  readonly ids?: { readonly vendor?: number; readonly device?: number };
  readonly groups?: readonly number[];
}

export function matchesIds(d: PciDevice, ids: LsFilter['ids']): boolean {
  return ids === undefined || ((ids.vendor === undefined || d.vendorId === ids.vendor) && (ids.device === undefined || d.deviceId === ids.device));
}

/** The groups a filter keeps: a group is shown whole when any of its devices matches. */
export function filterGroups(model: HostModel, filter: LsFilter): IommuGroup[] {
  return model.groups.filter((g) => (filter.groups === undefined || filter.groups.includes(g.id)) && g.devices.some((d) => matchesIds(d, filter.ids)));
}

export interface TextStyle {
  readonly color: boolean;
  /** Terminal columns; lines are cut to fit, undefined = never cut. */
  readonly width?: number;
}

export function lsLines(model: HostModel, groups: readonly IommuGroup[], safety: readonly SafetyFinding[], style: TextStyle, persisted: readonly PersistedDevice[] = []): string[] {
  const c = createColors(style.color);
  const paint: Record<GroupState, (s: string) => string> = {
    ready: c.green,
    viable: c.green,
    movable: c.yellow,
    protected: c.red,
    'fixed-first': c.magenta,
    'host-bridge-only': c.dim,
  };
  // Cut plain text, then colour it: an escape sequence is never cut in half. A tab counts as 8 columns.
  const cut = (s: string, indent = 0) => (style.width !== undefined && s.length + indent > style.width ? `${s.slice(0, Math.max(0, style.width - indent - 1))}…` : s);
  const lines: string[] = [];
  for (const g of groups) {
    const mark = groupMark(model, g, safety);
    const head = `IOMMU group ${g.id}${g.name ? ` (${g.name})` : ''}`;
    lines.push(`${c.bold(head)}  ${paint[mark.state](cut(`[${mark.text}]`, head.length + 2))}`);
    for (const d of g.devices) {
      lines.push(`  ${cut(`${d.address.replace(/^0000:/, '')} ${lspciLine(d)}`, 2)}`);
      const driver = `Kernel driver in use: ${d.driver ?? 'none'}`;
      const why = safety.filter((f) => f.address === d.address && f.rule !== 'bridge').map((f) => f.detail);
      const plain = cut(`${driver}${why.length > 0 ? `  host needs it: ${why.join('; ')}` : ''}`, 8);
      const colored = d.driver === 'vfio-pci' ? plain.replace(driver, c.green(driver)) : plain.length > driver.length ? `${plain.slice(0, driver.length)}${c.red(plain.slice(driver.length))}` : plain;
      lines.push(`\t${colored}`);
      const boot = persisted.find((p) => p.address === d.address);
      if (boot) lines.push(`\t${cut(`At boot: vfio-pci (vfiokit persist, ${boot.method}: ${boot.file})`, 8)}`);
    }
    lines.push('');
  }
  return lines;
}
