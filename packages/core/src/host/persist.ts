// Boot persistence: a group that goes to vfio-pci at every boot, before its
// host driver claims it, as driverctl's `set-override` and the modprobe.d
// recipe of the VFIO documentation do. Two ways, each written as plain
// configuration the operator can read and remove by hand:
//
// - udev (preferred, per device, as driverctl): a rule that writes the
//   device's driver_override on its `add` event. udev applies ATTR{}
//   assignments while it processes the rules and runs RUN programs after all
//   of them, so the override is in place before 80-drivers.rules' RUN loads
//   a module for the device (kmod load $env{MODALIAS}); the module's probe
//   then skips it (pci_match_device: an override matches only the driver it
//   names). A driver built into the kernel probes in device_add, before
//   udev sees the device: the rule's RUN moves the device as `vfiokit bind`
//   does (unbind, drivers_probe), the way driverctl's own rule runs
//   `driverctl set-override`.
// - modprobe.d (when the host has no udev): `options vfio-pci ids=` and a
//   softdep that loads vfio-pci before the host driver's module, so
//   vfio-pci's probe by ID table wins. It takes every device with those IDs,
//   so it is refused when another device shares them, and it needs the host
//   driver to be a loadable module (a built-in one probes before any
//   module loads).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PCI_DEVICES, PCI_DRIVERS } from './discover';
import { HostError } from './errors';
import type { HostModel, PciDevice } from './model';
import { planGroupBind, resolveGroup } from './bind';
import { describeViolation, type SafetyOverride } from './safety';
import type { HostFs } from './seam';

export type PersistMethod = 'udev' | 'modprobe';

export const UDEV_RULES_DIR = '/etc/udev/rules.d';
/**
 * udev's daemon, where Debian, Fedora and Arch (systemd-udevd) and eudev
 * (udevd) install it. Rule folders alone say nothing: systemd and dmsetup
 * drop rules in /lib/udev/rules.d on hosts and containers without udev,
 * where a rule written there is never read (measured: the lab's Debian 12
 * host has 55-dm.rules and 70-uaccess.rules there and no udev).
 */
const UDEV_DAEMONS = ['/lib/systemd/systemd-udevd', '/usr/lib/systemd/systemd-udevd', '/sbin/udevd', '/usr/sbin/udevd'];
/** udevd's control socket: it exists while udevd runs (libudev's udev_queue_get_udev_is_active tests it). */
const UDEV_CONTROL = '/run/udev/control';
export const MODPROBE_FILE = '/etc/modprobe.d/vfiokit.conf';
/** Below 80-drivers.rules, whose RUN loads the drivers. */
const RULE_PREFIX = '61-vfiokit-';

/** One device configured to go to vfio-pci at boot. */
export interface PersistedDevice {
  readonly address: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly method: PersistMethod;
  /** The file that says so. */
  readonly file: string;
  /** modprobe: the host driver's module that vfio-pci is loaded before. */
  readonly module?: string;
}

/** Writes configuration files under a root (`/` on a real host, the fixture's folder on a simulated one). */
export interface ConfigWriter {
  write(file: string, text: string): void;
  remove(file: string): void;
}

export function createConfigWriter(root = '/'): ConfigWriter {
  const place = (file: string) => path.join(root, file);
  return {
    write(file, text) {
      fs.mkdirSync(path.dirname(place(file)), { recursive: true });
      // Write then rename: udev and modprobe never read half a file.
      const tmp = `${place(file)}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, text, { mode: 0o644 });
      fs.renameSync(tmp, place(file));
    },
    remove(file) {
      fs.rmSync(place(file), { force: true });
    },
  };
}

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

/** Every device vfiokit has configured for vfio-pci at boot, by either method, in address order. */
export function listPersisted(host: HostFs): PersistedDevice[] {
  const out: PersistedDevice[] = [];
  for (const name of host.list(UDEV_RULES_DIR).filter((n) => n.startsWith(RULE_PREFIX) && n.endsWith('.rules'))) {
    const file = `${UDEV_RULES_DIR}/${name}`;
    const m = /KERNEL=="([^"]+)", ATTR\{vendor\}=="0x([0-9a-f]{4})", ATTR\{device\}=="0x([0-9a-f]{4})"/.exec(host.readText(file) ?? '');
    if (m) out.push({ address: m[1]!, vendorId: parseInt(m[2]!, 16), deviceId: parseInt(m[3]!, 16), method: 'udev', file });
  }
  for (const d of modprobeEntries(host)) out.push(d);
  return out.sort((a, b) => a.address.localeCompare(b.address));
}

function modprobeEntries(host: HostFs): PersistedDevice[] {
  const text = host.readText(MODPROBE_FILE) ?? '';
  return [...text.matchAll(/^# vfiokit device (\S+) ([0-9a-f]{4}):([0-9a-f]{4}) (\S+)$/gm)].map((m) => ({
    address: m[1]!,
    vendorId: parseInt(m[2]!, 16),
    deviceId: parseInt(m[3]!, 16),
    method: 'modprobe' as const,
    file: MODPROBE_FILE,
    module: m[4]!,
  }));
}

/** The module a PCI driver comes from, and whether it is loadable (not built in). */
export function driverModule(host: HostFs, driver: string): { readonly module?: string; readonly loadable: boolean } {
  const target = host.readLink(`${PCI_DRIVERS}/${driver}/module`);
  if (target === undefined) return { loadable: false };
  const module = path.posix.basename(target);
  // Only a loaded module has initstate (module_sysfs_initialized attributes);
  // a built-in one shows just its parameters under /sys/module.
  return { module, loadable: host.exists(`/sys/module/${module}/initstate`) };
}

export interface PersistOptions {
  /** Default: udev when the host has it, else modprobe. */
  readonly method?: PersistMethod;
  readonly force?: SafetyOverride;
  /** Devices persisted in the same call (other groups): modprobe's ids= may share them. */
  readonly together?: readonly string[];
}

/** What `persistGroup` writes, decided before anything is written. */
export interface PersistPlan {
  readonly group: number;
  readonly method: PersistMethod;
  /** Why this method, for the operator. */
  readonly why: string;
  readonly devices: readonly { readonly address: string; readonly vendorId: number; readonly deviceId: number; readonly driver?: string; readonly module?: string }[];
  /** Files and their whole new contents; an empty text removes the file. */
  readonly files: readonly { readonly file: string; readonly text: string }[];
  /** What else the operator must do for it to take effect at boot, if anything. */
  readonly notes: readonly string[];
}

function udevRule(d: PciDevice, group: number): string {
  const k = d.address;
  // %k is the device's kernel name (udev substitutes it; a literal $ would
  // need $$, so the shell line uses none). Unless vfio-pci has the device,
  // it unbinds a built-in driver that got there first and asks the driver
  // core to probe the device again (drivers_probe), as driverctl does after
  // every override. Writing driver_override probes nothing by itself
  // (driver_override_store), and a vfio-pci already loaded (for another
  // device, or by the initramfs) registers no more: without the probe an
  // unbound device stays unbound (the lab's persist case re-probes exactly that).
  const move = `modprobe -q vfio-pci; if [ ! -e ${PCI_DRIVERS}/vfio-pci/%k ]; then if [ -e ${PCI_DEVICES}/%k/driver ]; then echo %k > ${PCI_DEVICES}/%k/driver/unbind; fi; echo %k > /sys/bus/pci/drivers_probe; fi`;
  return [
    `# Written by 'vfiokit persist': ${k} (${hex4(d.vendorId)}:${hex4(d.deviceId)}, IOMMU group ${group}, driven by ${d.driver ?? 'no driver'} when persisted) goes to vfio-pci at boot.`,
    `# The override is written when udev sees the device, before 80-drivers.rules loads its driver; the RUN moves it if a built-in driver took it first.`,
    `# Remove with 'vfiokit unpersist ${k}' (or delete this file).`,
    `ACTION=="add", SUBSYSTEM=="pci", KERNEL=="${k}", ATTR{vendor}=="0x${hex4(d.vendorId)}", ATTR{device}=="0x${hex4(d.deviceId)}", ATTR{driver_override}="vfio-pci", RUN+="/bin/sh -c '${move}'"`,
    '',
  ].join('\n');
}

/** The whole modprobe.d file for `entries` (empty text when none is left). */
export function modprobeFileText(entries: readonly { address: string; vendorId: number; deviceId: number; module: string }[]): string {
  if (entries.length === 0) return '';
  entries = [...entries].sort((a, b) => a.address.localeCompare(b.address));
  const ids = [...new Set(entries.map((e) => `${hex4(e.vendorId)}:${hex4(e.deviceId)}`))];
  // '-': a device with no host driver to load vfio-pci before.
  const modules = [...new Set(entries.map((e) => e.module).filter((m) => m !== '-'))];
  return [
    "# Written by 'vfiokit persist': these devices go to vfio-pci at boot. vfio-pci is loaded",
    '# before their drivers\' modules and takes every device with these IDs. Edit with',
    "# 'vfiokit persist/unpersist'; after a change, rebuild the initramfs if it loads these modules.",
    ...entries.map((e) => `# vfiokit device ${e.address} ${hex4(e.vendorId)}:${hex4(e.deviceId)} ${e.module}`),
    `options vfio-pci ids=${ids.join(',')}`,
    ...modules.map((m) => `softdep ${m} pre: vfio-pci`),
    '',
  ].join('\n');
}

/** udev is installed (its daemon), or running now (its control socket). */
function hasUdev(host: HostFs): boolean {
  return [...UDEV_DAEMONS, UDEV_CONTROL].some((d) => host.exists(d));
}

/**
 * Decide how a group goes to vfio-pci at boot. Throws, before anything is
 * written, for a group a safety rule protects, a group of bridges only, a
 * bridge vfio-pci cannot take, and a method the host cannot use.
 */
export function planPersist(host: HostFs, model: HostModel, target: string | number, options: PersistOptions = {}): PersistPlan {
  const group = resolveGroup(model, target);
  const bind = planGroupBind(host, model, group.id, options.force ?? false);
  if (bind.refusals.length > 0) {
    const overrides = [...new Set(bind.refusals.map((f) => f.override))];
    throw new HostError('HOST_UNSAFE_DETACH', `group ${group.id} cannot go to vfio-pci at boot: ${bind.refusals.map((f) => describeViolation(f, group.devices.find((d) => d.address === f.address)?.driver)).join('; ')}`, {
      hint: `vfiokit persist ${overrides.join(' ')} ${group.id}, only if the host can boot without it`,
    });
  }
  const endpoints = group.devices.filter((d) => !d.isBridge && d.classCode >> 8 !== 0x0600);
  if (endpoints.length === 0) {
    throw new HostError('HOST_PERSIST_BRIDGES_ONLY', `group ${group.id} holds only bridges: there is nothing in it to give a guest`, { hint: "pick a group with an endpoint device: see 'vfiokit ls'" });
  }
  const detach = bind.devices.filter((p) => p.action === 'detach');
  if (detach.length > 0) {
    throw new HostError('HOST_PERSIST_BRIDGE', `group ${group.id} is viable only once ${detach.map((p) => `${p.address} leaves ${p.driver}`).join(', ')}, and vfio-pci cannot take a bridge: no boot configuration of vfio-pci moves it`, {
      hint: `bind the group after each boot instead: vfiokit bind ${group.id}`,
    });
  }
  const udev = hasUdev(host);
  let method: PersistMethod;
  let why: string;
  if (options.method === 'udev' && !udev) {
    throw new HostError('HOST_PERSIST_NO_UDEV', `this host has no udev (no ${UDEV_DAEMONS.join(', ')}, and no ${UDEV_CONTROL}: udevd is not running), so a udev rule would never run`, { hint: 'use --method modprobe' });
  }
  if (options.method !== undefined) {
    method = options.method;
    why = `--method ${method}`;
  } else if (udev) {
    method = 'udev';
    why = 'udev runs here: a rule sets driver_override for exactly these devices, as driverctl does';
  } else {
    method = 'modprobe';
    why = 'this host has no udev, so modprobe.d loads vfio-pci with their IDs before their drivers';
  }
  const devices = endpoints.map((d) => {
    const m = d.driver !== undefined && d.driver !== 'vfio-pci' ? driverModule(host, d.driver) : undefined;
    return { address: d.address, vendorId: d.vendorId, deviceId: d.deviceId, ...(d.driver ? { driver: d.driver } : {}), ...(m?.module ? { module: m.module } : {}), loadable: m?.loadable };
  });
  const notes: string[] = [];
  const files: { file: string; text: string }[] = [];
  if (method === 'udev') {
    for (const d of endpoints) files.push({ file: `${UDEV_RULES_DIR}/${RULE_PREFIX}${d.address}.rules`, text: udevRule(d, group.id) });
    notes.push('udev reads the rule at the next boot or device add; udevadm control --reload makes it read it now');
  } else {
    const builtIn = devices.filter((d) => d.driver !== undefined && d.driver !== 'vfio-pci' && !d.loadable);
    if (builtIn.length > 0) {
      throw new HostError('HOST_PERSIST_BUILTIN_DRIVER', `${builtIn.map((d) => `${d.address}'s driver ${d.driver}`).join(', ')} is built into the kernel, so it probes before modprobe.d can load vfio-pci`, {
        hint: udev ? 'use --method udev' : `boot with vfio-pci.ids=${[...new Set(builtIn.map((d) => `${hex4(d.vendorId)}:${hex4(d.deviceId)}`))].join(',')} on the kernel command line and ${builtIn[0]!.driver}'s own option to leave them`,
      });
    }
    const mine = new Set(endpoints.map((d) => d.address));
    const kept = modprobeEntries(host).filter((e) => !mine.has(e.address));
    const entries = [
      ...kept.map((e) => ({ address: e.address, vendorId: e.vendorId, deviceId: e.deviceId, module: e.module! })),
      ...devices.map((d) => ({ address: d.address, vendorId: d.vendorId, deviceId: d.deviceId, module: d.module ?? '-' })),
    ];
    // ids= takes every device with those IDs: refuse when one outside the persisted set has them.
    const persisted = new Set([...entries.map((e) => e.address), ...(options.together ?? [])]);
    const ids = new Set(entries.map((e) => `${e.vendorId}:${e.deviceId}`));
    const bystanders = model.devices.filter((d) => ids.has(`${d.vendorId}:${d.deviceId}`) && !persisted.has(d.address));
    if (bystanders.length > 0) {
      throw new HostError(
        'HOST_PERSIST_SHARED_IDS',
        `modprobe.d's vfio-pci ids= would also take ${bystanders.map((d) => `${d.address} (${hex4(d.vendorId)}:${hex4(d.deviceId)}, ${d.driver ?? 'no driver'})`).join(', ')}, which shares the IDs`,
        { hint: udev ? 'use --method udev, which sets the override per device' : `persist ${bystanders.map((d) => d.address).join(' ')} too, if the host can do without it` },
      );
    }
    files.push({ file: MODPROBE_FILE, text: modprobeFileText(entries) });
    const modules = [...new Set(devices.map((d) => d.module).filter((m): m is string => m !== undefined))];
    notes.push(`if the initramfs loads ${modules.length > 0 ? modules.join(', ') : 'these drivers'}, rebuild it (update-initramfs -u, or dracut -f) so it carries this file`);
  }
  return { group: group.id, method, why, devices: devices.map(({ loadable: _, ...d }) => d), files, notes };
}

/** Write what planPersist decided. */
export function persistGroup(host: HostFs, model: HostModel, writer: ConfigWriter, target: string | number, options: PersistOptions & { dryRun?: boolean } = {}): PersistPlan {
  const plan = planPersist(host, model, target, options);
  if (!options.dryRun) for (const f of plan.files) f.text === '' ? writer.remove(f.file) : writer.write(f.file, f.text);
  return plan;
}

export interface UnpersistResult {
  readonly group: number;
  readonly removed: readonly PersistedDevice[];
  readonly files: readonly { readonly file: string; readonly text: string }[];
}

/** Remove the boot configuration of every device of a group, whichever method wrote it. */
export function unpersistGroup(host: HostFs, model: HostModel, writer: ConfigWriter, target: string | number, options: { dryRun?: boolean } = {}): UnpersistResult {
  const group = resolveGroup(model, target);
  const members = new Set(group.devices.map((d) => d.address));
  const all = listPersisted(host);
  const removed = all.filter((p) => members.has(p.address));
  const files: { file: string; text: string }[] = removed.filter((p) => p.method === 'udev').map((p) => ({ file: p.file, text: '' }));
  if (removed.some((p) => p.method === 'modprobe')) {
    const kept = modprobeEntries(host).filter((e) => !members.has(e.address));
    files.push({ file: MODPROBE_FILE, text: modprobeFileText(kept.map((e) => ({ address: e.address, vendorId: e.vendorId, deviceId: e.deviceId, module: e.module! }))) });
  }
  if (!options.dryRun) for (const f of files) f.text === '' ? writer.remove(f.file) : writer.write(f.file, f.text);
  return { group: group.id, removed, files };
}
