import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createFixtureHost, type FixtureHost } from '@vfiokit/testkit';
import { discoverHost } from './discover';
import { createConfigWriter, driverModule, listPersisted, MODPROBE_FILE, persistGroup, planPersist, unpersistGroup } from './persist';

const USB = '0000:04:00.0';
const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';

function persistOn(host: FixtureHost, target: string | number, options: Parameters<typeof persistGroup>[4] = {}) {
  return persistGroup(host.fs, discoverHost(host.fs), createConfigWriter(host.root), target, options);
}

function withoutUdev(host: FixtureHost): FixtureHost {
  for (const d of ['/etc/udev', '/usr/lib/udev', '/usr/lib/systemd/systemd-udevd']) fs.rmSync(path.join(host.root, d), { recursive: true, force: true });
  return host;
}

test('on a host with udev a group is persisted by a rule per device that sets driver_override on add', (t) => {
  const host = createFixtureHost('workstation');
  const p = persistOn(host, 11);
  t.is(p.method, 'udev');
  t.deepEqual(p.files.map((f) => f.file), [`/etc/udev/rules.d/61-vfiokit-${USB}.rules`]);
  const rule = fs.readFileSync(path.join(host.root, p.files[0]!.file), 'utf8');
  t.regex(rule, /^ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:04:00\.0", ATTR\{vendor\}=="0x1b21", ATTR\{device\}=="0x2142", ATTR\{driver_override\}="vfio-pci", RUN\+="\/bin\/sh -c '.*'"$/m);
  // udev reads $ as the start of a substitution: the shell line must have none.
  t.false(rule.split('\n').find((l) => l.startsWith('ACTION'))!.includes('$'));
  t.deepEqual(listPersisted(host.fs), [{ address: USB, vendorId: 0x1b21, deviceId: 0x2142, method: 'udev', file: p.files[0]!.file }]);
});

/** The shell line of a rule's RUN, as udev would run it for `bdf`, against the fixture's sysfs and with no modprobe. */
function runOfRule(host: FixtureHost, rule: string, bdf: string): void {
  const line = /RUN\+="\/bin\/sh -c '([^']*)'"/.exec(rule)![1]!;
  const local = line.replaceAll('%k', bdf).replaceAll('/sys/', `${host.root}/sys/`).replace('modprobe -q vfio-pci', 'true');
  const r = spawnSync('/bin/sh', ['-c', local], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the rule's RUN failed: ${r.stderr}`);
}

test("the rule's RUN asks drivers_probe for a device vfio-pci does not have, unbinding a driver that got there first, and leaves one vfio-pci has", (t) => {
  const host = createFixtureHost('workstation');
  const p = persistOn(host, 11);
  const rule = fs.readFileSync(path.join(host.root, p.files[0]!.file), 'utf8');
  const sysfs = (f: string) => path.join(host.root, 'sys', f);
  const written = () => [fs.readFileSync(sysfs('bus/pci/drivers/xhci_hcd/unbind'), 'utf8').trim(), fs.readFileSync(sysfs('bus/pci/drivers_probe'), 'utf8').trim()];
  // Bound to xhci_hcd (a built-in driver probed before udev saw the device).
  runOfRule(host, rule, USB);
  t.deepEqual(written(), [USB, USB]);
  // Unbound (vfio-pci loaded before the override was written): probed all the same.
  for (const f of ['bus/pci/drivers/xhci_hcd/unbind', 'bus/pci/drivers_probe']) fs.writeFileSync(sysfs(f), '');
  fs.rmSync(sysfs(`bus/pci/devices/${USB}/driver`));
  runOfRule(host, rule, USB);
  t.deepEqual(written(), ['', USB]);
  // Already on vfio-pci: nothing to do.
  fs.writeFileSync(sysfs('bus/pci/drivers_probe'), '');
  fs.mkdirSync(sysfs(`bus/pci/drivers/vfio-pci/${USB}`), { recursive: true });
  runOfRule(host, rule, USB);
  t.deepEqual(written(), ['', '']);
});

test('persisting writes no sysfs attribute: the running host keeps its drivers', (t) => {
  const host = createFixtureHost('workstation');
  persistOn(host, USB);
  t.deepEqual(host.writes, []);
  t.is(host.deviceStates()[USB]!.driver, 'xhci_hcd');
});

test('a host without udev gets modprobe.d: vfio-pci ids= and a softdep on each host driver\'s module', (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  const p = persistOn(host, 11);
  t.is(p.method, 'modprobe');
  t.regex(p.why, /no udev/);
  const text = fs.readFileSync(path.join(host.root, MODPROBE_FILE), 'utf8');
  // xhci_hcd is registered by the xhci_pci module.
  t.regex(text, /^options vfio-pci ids=1b21:2142\nsoftdep xhci_pci pre: vfio-pci\n$/m);
  t.deepEqual(listPersisted(host.fs).map((d) => [d.address, d.method, d.module]), [[USB, 'modprobe', 'xhci_pci']]);
});

test("udev's rules folders without its daemon (systemd's and dmsetup's rules on a host without udev) are no udev: modprobe.d is chosen", (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  for (const d of ['/lib/udev/rules.d', '/etc/udev/rules.d']) fs.mkdirSync(path.join(host.root, d), { recursive: true });
  fs.writeFileSync(path.join(host.root, '/lib/udev/rules.d/55-dm.rules'), '');
  t.is(planPersist(host.fs, discoverHost(host.fs), 11).method, 'modprobe');
  const err = t.throws(() => planPersist(host.fs, discoverHost(host.fs), 11, { method: 'udev' }));
  t.regex(err!.message, /no udev .*systemd-udevd.*udevd is not running/);
});

test("a running udevd (its control socket in /run/udev) is udev, wherever its daemon was installed from", (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  fs.mkdirSync(path.join(host.root, '/run/udev'), { recursive: true });
  fs.writeFileSync(path.join(host.root, '/run/udev/control'), '');
  t.is(planPersist(host.fs, discoverHost(host.fs), 11).method, 'udev');
});

test('modprobe.d keeps devices persisted earlier and lists every ID once', (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  persistOn(host, 11);
  persistOn(host, GPU, { force: ['console-display'] });
  const text = fs.readFileSync(path.join(host.root, MODPROBE_FILE), 'utf8');
  t.regex(text, /^options vfio-pci ids=10de:1b80,10de:10f0,1b21:2142$/m);
  t.deepEqual(listPersisted(host.fs).map((d) => d.address), [GPU, AUDIO, USB]);
});

test('modprobe.d is refused when another device shares the IDs, naming it', (t) => {
  const host = createFixtureHost('sriov-server');
  const err = t.throws(() => planPersist(host.fs, discoverHost(host.fs), 4, { method: 'modprobe' }));
  t.is((err as { code?: string }).code, 'HOST_PERSIST_SHARED_IDS');
  t.regex(err!.message, /would also take 0000:3b:02\.1 \(8086:154c, iavf\)/);
});

test('modprobe.d is refused for a device whose driver is built into the kernel', (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  fs.rmSync(path.join(host.root, '/sys/module/xhci_pci/initstate'));
  t.deepEqual(driverModule(host.fs, 'xhci_hcd'), { module: 'xhci_pci', loadable: false });
  const err = t.throws(() => planPersist(host.fs, discoverHost(host.fs), 11));
  t.is((err as { code?: string }).code, 'HOST_PERSIST_BUILTIN_DRIVER');
  t.regex((err as { hint?: string }).hint!, /vfio-pci\.ids=1b21:2142 on the kernel command line/);
});

test('a group a safety rule protects is not persisted without its --force, and nothing is written', (t) => {
  const host = createFixtureHost('workstation');
  const err = t.throws(() => persistOn(host, GPU));
  t.is((err as { code?: string }).code, 'HOST_UNSAFE_DETACH');
  t.regex((err as { hint?: string }).hint!, /^vfiokit persist --force console-display 1/);
  t.deepEqual(listPersisted(host.fs), []);
});

test('unpersist removes udev rules and modprobe.d entries of the group and keeps the others', (t) => {
  const host = withoutUdev(createFixtureHost('workstation'));
  persistOn(host, 11);
  persistOn(host, GPU, { force: ['console-display'] });
  const r = unpersistGroup(host.fs, discoverHost(host.fs), createConfigWriter(host.root), 1);
  t.deepEqual(r.removed.map((d) => d.address), [GPU, AUDIO]);
  t.deepEqual(listPersisted(host.fs).map((d) => d.address), [USB]);
  unpersistGroup(host.fs, discoverHost(host.fs), createConfigWriter(host.root), 11);
  t.false(fs.existsSync(path.join(host.root, MODPROBE_FILE)), 'the file goes with its last device');
});
