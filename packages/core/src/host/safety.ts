// Host-safety rules: devices the host needs to stay alive and reachable.
// Detaching one of them from its driver is refused unless the caller forces
// that rule by name. libvirt has no such rules (it trusts its XML); these are
// the ones an operator at a terminal most often regrets breaking.
import * as path from 'node:path';
import { isPciAddress } from './address';
import type { HostModel, PciDevice } from './model';
import { resolveLink, type HostFs } from './seam';

/** The rules, by the name `force` takes. */
export type SafetyRule = 'root-filesystem' | 'default-route' | 'console-display' | 'bridge';

export const SAFETY_RULES: readonly SafetyRule[] = ['root-filesystem', 'default-route', 'console-display', 'bridge'];

/** Why one device must stay with the host. */
export interface SafetyFinding {
  readonly address: string;
  readonly rule: SafetyRule;
  /** What the host uses it for, in words (`/ is on /dev/nvme0n1p2`). */
  readonly detail: string;
  /** How to detach it anyway. */
  readonly override: string;
}

/** Which rules to waive: all of them (`true`) or some by name. */
export type SafetyOverride = boolean | readonly SafetyRule[];

/** Every device the host needs, with the rule that protects it. */
export function findProtectedDevices(host: HostFs, model: HostModel): readonly SafetyFinding[] {
  const findings: SafetyFinding[] = [];
  const add = (address: string, rule: SafetyRule, detail: string) => {
    if (!findings.some((f) => f.address === address && f.rule === rule)) {
      findings.push({ address, rule, detail, override: `--force ${rule}` });
    }
  };
  const root = rootFilesystem(host);
  if (root) for (const a of blockControllers(host, root.block)) add(a, 'root-filesystem', `it serves the root filesystem (/ is ${root.source})`);
  for (const iface of defaultRouteInterfaces(host)) {
    for (const a of netdevControllers(host, iface)) add(a, 'default-route', `it carries the default route (${iface})`);
  }
  for (const d of model.devices) if (d.bootVga) add(d.address, 'console-display', 'it drives the boot console (boot_vga = 1)');
  for (const fb of host.list('/sys/class/graphics')) {
    const device = pciAncestor(classDeviceParent(host, `/sys/class/graphics/${fb}`));
    if (device) add(device, 'console-display', `it drives the framebuffer console (${fb})`);
  }
  for (const d of model.devices) if (d.isBridge) add(d.address, 'bridge', 'it is a PCI bridge: devices behind it would lose their path to the host');
  return findings;
}

/** The findings that stop detaching `devices`, after `force`. */
export function safetyViolations(
  findings: readonly SafetyFinding[],
  devices: readonly PciDevice[],
  force: SafetyOverride = false,
): readonly SafetyFinding[] {
  const waived = (rule: SafetyRule) => force === true || (Array.isArray(force) && force.includes(rule));
  const addresses = new Set(devices.map((d) => d.address));
  return findings.filter((f) => addresses.has(f.address) && !waived(f.rule));
}

/** A sentence for a refusal: the device, the rule, why, and how to override. */
export function describeViolation(f: SafetyFinding, driver: string | undefined): string {
  const from = driver === undefined ? '' : ` from ${driver}`;
  return `refusing to detach ${f.address}${from}: ${f.detail} (rule '${f.rule}'); override with ${f.override} if the host can do without it`;
}

/** The root mount: its block device's sysfs path (if it has one) and how it was mounted. */
export function rootFilesystem(host: HostFs): { readonly block?: string; readonly source: string } | undefined {
  const text = host.readText('/proc/self/mountinfo');
  if (text === undefined) return undefined;
  // The last mount on / is the one in effect (mounts stack).
  const root = text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 9 && f[4] === '/')
    .pop();
  if (!root) return undefined;
  const devt = root[2]!;
  const dash = root.indexOf('-', 6);
  const source = dash > 0 ? (root[dash + 2] ?? '') : '';
  // Filesystems on block devices show the device's major:minor; btrfs shows
  // an anonymous 0:N, so fall back to the mount source's name.
  let block = devt.startsWith('0:') ? undefined : resolveLink(host, `/sys/dev/block/${devt}`);
  if (block === undefined && source.startsWith('/dev/')) block = blockByName(host, source.slice(5));
  return { ...(block === undefined ? {} : { block }), source };
}

function blockByName(host: HostFs, name: string): string | undefined {
  if (name.startsWith('mapper/')) {
    const wanted = name.slice(7);
    for (const b of host.list('/sys/class/block')) {
      if (host.readText(`/sys/class/block/${b}/dm/name`)?.trim() === wanted) return resolveLink(host, `/sys/class/block/${b}`);
    }
    return undefined;
  }
  return resolveLink(host, `/sys/class/block/${path.posix.basename(name)}`);
}

/** PCI controllers under a block device, through device-mapper and md `slaves`. */
export function blockControllers(host: HostFs, block: string | undefined, depth = 0): readonly string[] {
  if (block === undefined || depth > 8) return [];
  const slaves = host.list(`${block}/slaves`);
  // A partition has no slaves folder of its own: its disk (the parent folder) may.
  const own = slaves.length > 0 ? slaves : host.list(`${path.posix.dirname(block)}/slaves`);
  if (own.length > 0) {
    const lower = own.flatMap((s) => blockControllers(host, resolveLink(host, `/sys/class/block/${s}`), depth + 1));
    return [...new Set(lower)];
  }
  const controller = pciAncestor(block);
  return controller ? [controller] : [];
}

/** Interfaces that carry an IPv4 or IPv6 default route. */
export function defaultRouteInterfaces(host: HostFs): readonly string[] {
  const ifaces = new Set<string>();
  // /proc/net/route: Iface Destination Gateway Flags ... Mask; RTF_UP = 0x1.
  for (const line of (host.readText('/proc/net/route') ?? '').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000' && parseInt(f[3]!, 16) & 0x1) ifaces.add(f[0]!);
  }
  // /proc/net/ipv6_route: dest plen src splen nexthop metric refcnt use flags iface; skip RTF_REJECT (0x200) and lo.
  for (const line of (host.readText('/proc/net/ipv6_route') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^0{32}$/.test(f[0]!) || f[1] !== '00' || f[9] === 'lo') continue;
    if (parseInt(f[8]!, 16) & 0x200) continue;
    ifaces.add(f[9]!);
  }
  return [...ifaces];
}

/** The PCI devices under a network interface, through bridges, bonds and VLANs (`lower_*`, `brif/*`). */
export function netdevControllers(host: HostFs, iface: string, depth = 0): readonly string[] {
  if (depth > 8) return [];
  const dir = resolveLink(host, `/sys/class/net/${iface}`);
  if (dir === undefined) return [];
  const own = pciAncestor(classDeviceParent(host, `/sys/class/net/${iface}`));
  if (own) return [own];
  const lower = [
    ...host.list(dir).filter((n) => n.startsWith('lower_')).map((n) => n.slice(6)),
    ...host.list(`${dir}/brif`),
  ];
  return [...new Set(lower.flatMap((l) => netdevControllers(host, l, depth + 1)))];
}

/**
 * The `device` a class entry (/sys/class/net/eth0) belongs to. The class
 * entry is itself a link into /sys/devices and `device` is relative to where
 * it points, so the class link is resolved first.
 */
function classDeviceParent(host: HostFs, classEntry: string): string | undefined {
  const real = resolveLink(host, classEntry);
  return real === undefined ? undefined : resolveLink(host, `${real}/device`);
}

/** The nearest PCI device on a sysfs path (the last PCI address component). */
function pciAncestor(sysfsPath: string | undefined): string | undefined {
  if (sysfsPath === undefined) return undefined;
  return sysfsPath.split('/').filter(isPciAddress).pop();
}
