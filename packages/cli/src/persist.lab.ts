// `vfiokit persist` / `unpersist` on the real kernel (the lab's x86 guest,
// see packages/testkit/src/lab/README.md), with a real udev: Debian's
// systemd-udevd (the runner copies udevadm, which is also the daemon, into
// the output folder) runs in the guest and handles the kernel's own
// uevents. The guest's root is the host's, read-only and without udev, so
// the case gives it a writable /etc for the rule (a folder on the guest's
// tmpfs, linking to the host's entries, bound over it; dropped at the end).
//
// The solo edu leaves vfio-pci with no override; persist must see udevd
// running and write its rule; the device is then removed and the bus
// rescanned, and udev, not the case, must put it on vfio-pci. After
// unpersist the same re-probe leaves it with no driver (edu has none in the
// kernel). Through the built binary, as an operator runs it.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { assertDocument, type SchemaName } from './json-schema';
import { driverOf } from '@vfiokit/testkit/lab-guest';
import { BIN, DEVICES, overrideOf, soloBdf } from './lab/guest';

/** Where the runner put Debian's udevadm (the guest's view of the output folder). */
const UDEVADM = process.env.VFIOKIT_LAB_UDEVADM;
const CONTROL = '/run/udev/control';

let began = Date.now();
/** Progress on the guest's console: where a slow or stuck run is. */
function step(what: string): void {
  process.stderr.write(`lab case cli/persist: ${what} (+${((Date.now() - began) / 1000).toFixed(1)} s)\n`);
}

function sh(argv: readonly string[], timeoutMs = 60_000): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `${argv.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}${r.error ? ` (${r.error.message})` : ''}`);
  return r.stdout;
}

/** `vfiokit ... --json`, its document checked against the published schema. */
function vfiokit<T>(schema: SchemaName, args: readonly string[]): T {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `vfiokit ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const doc = JSON.parse(r.stdout) as T;
  assertDocument(schema, doc);
  return doc;
}

/**
 * Off its driver and its override, out of the kernel and back by a bus
 * rescan; returns once udevd has finished the device's add event: its
 * debug log says "Device processed (SEQNUM=N, ACTION=add)" for the device
 * after the rules and their RUN programs (udevd's worker_process_device).
 * Not `udevadm settle`, with which a full lab run on a loaded host failed
 * once: settle can find udevd's queue empty before udevd has read the
 * kernel's uevent.
 */
async function reprobe(bdf: string, udevdLog: string): Promise<void> {
  if (driverOf(bdf) !== null) fs.writeFileSync(`${DEVICES}/${bdf}/driver/unbind`, bdf);
  fs.writeFileSync(`${DEVICES}/${bdf}/driver_override`, '\n');
  assert.deepEqual([driverOf(bdf), overrideOf(bdf)], [null, '(null)']);
  const processed = new RegExp(`${bdf.replace(/\./g, '\\.')}: Device processed \\(SEQNUM=\\d+, ACTION=add\\)`, 'g');
  const adds = () => fs.readFileSync(udevdLog, 'utf8').match(processed)?.length ?? 0;
  const before = adds();
  fs.writeFileSync(`${DEVICES}/${bdf}/remove`, '1');
  assert.equal(fs.existsSync(`${DEVICES}/${bdf}`), false, `${bdf} is still there after remove`);
  fs.writeFileSync('/sys/bus/pci/rescan', '1');
  assert.ok(fs.existsSync(`${DEVICES}/${bdf}`), `${bdf} did not come back on rescan`);
  try {
    await waitFor(`udevd to finish the add event of ${bdf}`, () => adds() > before, 120_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}; udevd's log ends:\n${fs.readFileSync(udevdLog, 'utf8').split('\n').slice(-25).join('\n')}`);
  }
}

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A writable /etc and a running udevd for `body`; afterwards udevd is
 * stopped, /etc is the host's again, and solo is back on vfio-pci as the
 * lab's /init left it.
 */
async function withUdev(body: (bdf: string, udevdLog: string) => Promise<void>): Promise<void> {
  began = Date.now();
  assert.ok(UDEVADM && fs.existsSync(UDEVADM), `VFIOKIT_LAB_UDEVADM (${UDEVADM}) names no udevadm: the x86 runner copies Debian's into the output folder`);
  assert.equal(fs.existsSync(CONTROL), false, 'a udevd already runs in the guest');
  const bdf = soloBdf();
  assert.equal(driverOf(bdf), 'vfio-pci', 'the lab starts with solo on vfio-pci');
  const scratch = fs.mkdtempSync('/tmp/vfiokit-persist-');
  const etc = join(scratch, 'etc');
  const hostEtc = join(scratch, 'host-etc');
  let mounted = false;
  let udevd: ChildProcess | undefined;
  const log = fs.openSync(join(scratch, 'udevd.log'), 'w');
  try {
    // The host's /etc stays reachable beside it, and the writable /etc links
    // to each of its entries: a copy over 9p took over a minute under load.
    fs.mkdirSync(etc);
    fs.mkdirSync(hostEtc);
    step('linking /etc');
    sh(['mount', '--bind', '/etc', hostEtc]);
    for (const name of fs.readdirSync(hostEtc)) fs.symlinkSync(join(hostEtc, name), join(etc, name));
    sh(['mount', '--bind', etc, '/etc']);
    mounted = true;
    step('starting udevd');
    // udevadm is systemd-udevd when called by that name (udevadm.c).
    const daemon = join(scratch, 'systemd-udevd');
    fs.symlinkSync(UDEVADM, daemon);
    udevd = spawn(daemon, ['--resolve-names=never', '--debug'], { stdio: ['ignore', log, log] });
    const exited = new Promise<void>((resolve) => udevd!.on('exit', () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    await waitFor('udevd to open /run/udev/control', () => gone || fs.existsSync(CONTROL), 60_000);
    assert.ok(!gone, `udevd exited at start: ${fs.readFileSync(join(scratch, 'udevd.log'), 'utf8').slice(-2000)}`);
    step('udevd runs');
    await body(bdf, join(scratch, 'udevd.log'));
  } finally {
    if (udevd && udevd.exitCode === null) {
      const exited = new Promise((resolve) => udevd!.on('exit', resolve));
      udevd.kill('SIGTERM');
      await exited;
    }
    fs.closeSync(log);
    fs.rmSync('/run/udev', { recursive: true, force: true });
    if (mounted) sh(['umount', '/etc']);
    if (fs.existsSync(join(hostEtc, 'passwd'))) sh(['umount', hostEtc]);
    fs.rmSync(scratch, { recursive: true, force: true });
    if (fs.existsSync(`${DEVICES}/${bdf}`)) {
      if (driverOf(bdf) !== null && driverOf(bdf) !== 'vfio-pci') fs.writeFileSync(`${DEVICES}/${bdf}/driver/unbind`, bdf);
      fs.writeFileSync(`${DEVICES}/${bdf}/driver_override`, 'vfio-pci');
      if (driverOf(bdf) === null) fs.writeFileSync('/sys/bus/pci/drivers_probe', bdf);
    } else {
      fs.writeFileSync('/sys/bus/pci/rescan', '1');
    }
  }
}

interface PersistDoc {
  groups: { method: string; files: { file: string; text: string }[] }[];
}
interface LsDoc {
  groups: { devices: { address: string; atBoot: { driver: string; method: string; file: string } | null }[] }[];
}

export const cases: { name: string; run: () => void | Promise<void>; timeoutMs?: number }[] = [
  {
    name: 'vfiokit persist on a host running udevd writes a rule, and after a remove and rescan udev puts the solo edu on vfio-pci by itself; after unpersist the same re-probe leaves it with no driver',
    // Three vfiokit processes under TCG, a minute or more each on a loaded host.
    timeoutMs: 600_000,
    run: () =>
      withUdev(async (bdf, udevdLog) => {
        const rule = `/etc/udev/rules.d/61-vfiokit-${bdf}.rules`;
        step('vfiokit persist');
        const persisted = vfiokit<PersistDoc>('persist', ['persist', bdf]);
        assert.deepEqual(
          persisted.groups.map((g) => [g.method, g.files.map((f) => f.file)]),
          [['udev', [rule]]],
        );
        assert.ok(fs.existsSync(rule), `${rule} was not written`);
        step('vfiokit ls');
        const listed = vfiokit<LsDoc>('ls', ['ls']).groups.flatMap((g) => g.devices).find((d) => d.address === bdf);
        assert.deepEqual(listed?.atBoot, { driver: 'vfio-pci', method: 'udev', file: rule });
        // What persist's note says to do on a running host.
        sh([UDEVADM!, 'control', '--reload']);

        step('remove and rescan');
        await reprobe(bdf, udevdLog);
        const state = [driverOf(bdf), overrideOf(bdf)];
        assert.deepEqual(state, ['vfio-pci', 'vfio-pci'], `udev did not put the device on vfio-pci after its add event (driver, override: ${state.join(', ')})`);

        step('vfiokit unpersist');
        const unpersisted = vfiokit<{ groups: { removed: { address: string }[] }[] }>('unpersist', ['unpersist', bdf]);
        assert.deepEqual(unpersisted.groups.flatMap((g) => g.removed.map((d) => d.address)), [bdf]);
        assert.equal(fs.existsSync(rule), false, `${rule} is still there after unpersist`);
        sh([UDEVADM!, 'control', '--reload']);

        step('remove and rescan');
        await reprobe(bdf, udevdLog);
        const after = [driverOf(bdf), overrideOf(bdf)];
        assert.deepEqual(after, [null, '(null)'], `after unpersist the device still went to vfio-pci (driver, override: ${after.join(', ')})`);
      }),
  },
];
