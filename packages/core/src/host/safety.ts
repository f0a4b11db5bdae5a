// Host-safety rules: devices the host needs to stay alive and reachable.
// Detaching one of them from its driver is refused unless the caller forces
// that rule by name. libvirt has no such rules (it trusts its XML); these are
// as strict as dpdk-devbind's (which refuses any interface with a route):
// every mounted filesystem, followed through partitions, device-mapper (LVM)
// and md down to its PCI controller; active swap; any interface that is up
// with a route or a global address; the console; bridges.
import * as path from 'node:path';
import { isPciAddress } from './address';
import type { HostModel, PciDevice } from './model';
import { resolveLink, type HostFs } from './seam';

/** The rules, by the name `force` takes. */
export type SafetyRule = 'root-filesystem' | 'mounted-filesystem' | 'swap' | 'default-route' | 'active-interface' | 'console-display' | 'bridge';

export const SAFETY_RULES: readonly SafetyRule[] = ['root-filesystem', 'mounted-filesystem', 'swap', 'default-route', 'active-interface', 'console-display', 'bridge'];

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
  for (const m of mounts(host)) {
    if (m.mountPoint === '/') continue;
    for (const a of blockControllers(host, m.block)) add(a, 'mounted-filesystem', `it serves a mounted filesystem (${m.mountPoint} is ${m.source})`);
  }
  for (const s of activeSwap(host)) {
    for (const a of blockControllers(host, s.block)) add(a, 'swap', `it serves active swap (${s.name})`);
  }
  const withDefault = defaultRouteInterfaces(host);
  for (const iface of withDefault) {
    for (const a of netdevControllers(host, iface)) add(a, 'default-route', `it carries the default route (${iface})`);
  }
  for (const { iface, why } of activeInterfaces(host)) {
    if (withDefault.includes(iface)) continue;
    for (const a of netdevControllers(host, iface)) add(a, 'active-interface', `it drives ${iface}, which is up with ${why}`);
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

/** One mount of a block device: where, from what (as mount(8) shows it), and its sysfs block folder. */
export interface BlockMount {
  readonly mountPoint: string;
  readonly source: string;
  readonly block?: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal (show_mountinfo, seq_path). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every mount whose filesystem sits on a block device, in mountinfo's order. */
export function mounts(host: HostFs): readonly BlockMount[] {
  const out: BlockMount[] = [];
  for (const line of (host.readText('/proc/self/mountinfo') ?? '').split('\n')) {
    const f = line.split(' ');
    if (f.length <= 9) continue;
    const devt = f[2]!;
    const dash = f.indexOf('-', 6);
    const source = dash > 0 ? unescapeMount(f[dash + 2] ?? '') : '';
    // 0:N is an anonymous device (tmpfs, proc, btrfs subvolumes): only a /dev source names a disk then.
    let block = devt.startsWith('0:') ? undefined : resolveLink(host, `/sys/dev/block/${devt}`);
    if (block === undefined && source.startsWith('/dev/')) block = blockByName(host, source.slice(5));
    if (block === undefined) continue;
    out.push({ mountPoint: unescapeMount(f[4]!), source, block });
  }
  return out;
}

/**
 * Active swap (/proc/swaps): a partition by its name; a swap file by the
 * block device of the mount that holds it (the longest mount point before it).
 */
export function activeSwap(host: HostFs): readonly { readonly name: string; readonly block?: string }[] {
  const lines = (host.readText('/proc/swaps') ?? '').split('\n').slice(1);
  const all = mounts(host);
  const out: { name: string; block?: string }[] = [];
  for (const line of lines) {
    const [file, type] = line.trim().split(/\s+/);
    if (!file || !type) continue;
    const name = unescapeMount(file);
    if (type === 'partition' && name.startsWith('/dev/')) {
      const block = blockByName(host, name.slice(5));
      out.push({ name, ...(block === undefined ? {} : { block }) });
      continue;
    }
    const holder = all
      .filter((m) => name === m.mountPoint || name.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : `${m.mountPoint}/`))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    out.push({ name: `swap file ${name} on ${holder?.source ?? 'an unknown device'}`, ...(holder?.block === undefined ? {} : { block: holder.block }) });
  }
  return out;
}

/**
 * Interfaces that are up (IFF_UP in `flags`, else operstate) with an IPv4 or
 * IPv6 route, or a global IPv6 address: what dpdk-devbind calls "Active"
 * (it greps `ip -o route` for the interface). Link-local routes (fe80::/64)
 * and multicast ones (ff00::/8) exist on every up interface and do not count.
 */
export function activeInterfaces(host: HostFs): readonly { readonly iface: string; readonly why: string }[] {
  const why = new Map<string, string>();
  for (const line of (host.readText('/proc/net/route') ?? '').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !(parseInt(f[3]!, 16) & 0x1)) continue;
    // Destination and mask are little-endian hex on x86 (as the kernel prints __be32 with %08X).
    const ip = (h: string) => [6, 4, 2, 0].map((i) => parseInt(h.slice(i, i + 2), 16)).join('.');
    const bits = [...parseInt(f[7]!, 16).toString(2)].filter((b) => b === '1').length;
    if (!why.has(f[0]!)) why.set(f[0]!, `a route to ${ip(f[1]!)}/${bits}`);
  }
  for (const line of (host.readText('/proc/net/ipv6_route') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] === 'lo' || parseInt(f[8]!, 16) & 0x200) continue;
    if (/^fe[89ab]/.test(f[0]!) || f[0]!.startsWith('ff')) continue;
    if (!why.has(f[9]!)) why.set(f[9]!, `an IPv6 route to ${ipv6(f[0]!)}/${parseInt(f[1]!, 16)}`);
  }
  // /proc/net/if_inet6: address ifindex prefixlen scope flags name; scope 00 is global.
  for (const line of (host.readText('/proc/net/if_inet6') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[3] !== '00' || f[5] === 'lo') continue;
    if (!why.has(f[5]!)) why.set(f[5]!, `the address ${ipv6(f[0]!)}`);
  }
  return [...why].filter(([iface]) => iface !== 'lo' && interfaceUp(host, iface)).map(([iface, w]) => ({ iface, why: w }));
}

function interfaceUp(host: HostFs, iface: string): boolean {
  const flags = host.readText(`/sys/class/net/${iface}/flags`)?.trim();
  if (flags !== undefined && flags !== '') return (parseInt(flags, 16) & 0x1) !== 0;
  const state = host.readText(`/sys/class/net/${iface}/operstate`)?.trim();
  return state === 'up' || state === 'unknown';
}

/** 32 hex digits as an IPv6 address, zeros compressed once. */
function ipv6(hex: string): string {
  const groups = (hex.match(/.{4}/g) ?? []).map((g) => parseInt(g, 16).toString(16));
  const text = groups.join(':');
  return text.replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
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
