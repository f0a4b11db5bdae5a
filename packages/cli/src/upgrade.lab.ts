// `vfiokit upgrade` on the real kernel (the lab's x86 guest, Debian 6.1,
// type1v2 behind the emulated VT-d; packages/testkit/src/lab/README.md): a
// guest that `vfiokit run` started under QEMU 11.1 with KVM, holding the
// lab's `bus-reset` edu by vfio-pci, is handed to a new QEMU 11.1 process by
// cpr-transfer while it runs and keeps edu doing DMA. QEMU 11.1 is Debian
// sid's, run from the sid root scripts/fetch-qemu.sh sid caches (the x86
// profile names it in VFIOKIT_LAB_QEMU_CPR); bookworm's 7.2 has no
// cpr-transfer.
//
// Why KVM: the lab's CPU is QEMU's TCG `-cpu max`, an AMD CPU with SVM, so
// the x86 profile loads kvm_amd and the guest has /dev/kvm. Under TCG the
// old QEMU dies as the migration starts (QEMU moves the device's interrupts
// into KVM unconditionally, hw/vfio/cpr.c vfio_cpr_set_msi_virq; the lab
// showed the SIGSEGV), and `vfiokit upgrade` refuses such a guest: the
// second case.
//
// Why `bus-reset` and not `solo`: the kernel resets `bus-reset` by a
// secondary bus reset (it is alone behind its own root port), so vfio-pci
// reports VFIO_DEVICE_FLAGS_RESET and QEMU's vfio_pci_compute_needs_reset
// leaves it out of the system reset; the new QEMU's per-device reset
// (vfio_pci_reset) returns early while cpr_is_incoming(). `solo` has no reset
// at all, QEMU resets it under the running guest, and `vfiokit upgrade`
// refuses it (run.lab.ts; cpr-reset.ts).
//
// The guest is lab/dma-guest.S, entered by SeaBIOS and QEMU's multiboot
// loader (a Linux guest under nested TCG would take minutes to boot): it
// has edu copy a fresh pattern from its RAM into edu's buffer and back,
// round after round, counts the rounds that came back right and wrong, and
// counts a heartbeat while it waits. Those counters live in guest RAM, which
// this case reads through the memfd QEMU keeps it in (the same file for
// both QEMUs: cpr-transfer passes it over). What that shows:
// - the guest kept running: the heartbeat never went back (no reset, no
//   reboot) and went on growing under the new QEMU; its longest stall is
//   the guest's pause, seen from outside;
// - the device kept doing DMA through the QEMU's IOMMU mappings: rounds go
//   on completing after the old QEMU is gone, and none came back wrong, the
//   ones in flight across the hand-over included (while the mappings' host
//   addresses were invalid, VFIO_DMA_UNMAP_FLAG_VADDR, the pinned pages
//   stayed mapped: vfio_iommu_type1.c vfio_dma_do_unmap);
// - the new QEMU owns it all: it alone holds the group, maps the same guest
//   RAM memfd, and the pinned guest RAM is charged to it (VmLck: type1 moves
//   locked_vm to the mm that updates the addresses, vfio_dma_do_map's
//   VFIO_DMA_MAP_FLAG_VADDR path).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { driverOf, iommuGroupOf } from '@vfiokit/testkit/lab-guest';
import type { UpgradeReport } from './commands/upgrade';
import { BIN, DEVICES, holders, labDeviceBdf, qmpStatus, runVfiokit, startRun, vmLckKiB } from './lab/guest';

const GUEST = 'lab-upgrade';
const RAM = 64 * 1024 * 1024;
/** Where dma-guest.S keeps its counters (guest-physical, so offset in the memfd). */
const STAT = 0x200000;
const MAGIC = 0x474b4656;

interface Counters {
  readonly magic: number;
  readonly edu: number;
  readonly heartbeat: bigint;
  readonly rounds: number;
  readonly ok: number;
  readonly bad: number;
}

/** On the guest's console, where a hung case still shows how far it got. */
const progress = (line: string): void => void process.stderr.write(`upgrade lab: ${line}\n`);

/** Assembles lab/dma-guest.S with the host's binutils into `dir`; returns the ELF. */
function buildGuest(dir: string): string {
  const src = join(__dirname, '..', 'src', 'lab', 'dma-guest.S');
  const obj = join(dir, 'dma-guest.o');
  const elf = join(dir, 'dma-guest.elf');
  for (const [cmd, args] of [
    ['as', ['--32', '-o', obj, src]],
    // -N: one load segment at 1 MiB (no page-aligned headers below it, in the BIOS area).
    ['ld', ['-m', 'elf_i386', '-N', '--no-warn-rwx-segments', '-Ttext', '0x100000', '-o', elf, obj]],
  ] as const) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  }
  return elf;
}

/** The memfds `pid` holds, by fd path. */
function memfds(pid: number): string[] {
  return fs
    .readdirSync(`/proc/${pid}/fd`)
    .map((n) => `/proc/${pid}/fd/${n}`)
    .filter((link) => {
      try {
        return fs.readlinkSync(link).startsWith('/memfd:');
      } catch {
        return false;
      }
    });
}

/** The guest RAM memfd QEMU `pid` holds (the one of the guest's RAM size), opened for reading. */
function openGuestRam(pid: number): { fd: number; ino: number } {
  for (const link of memfds(pid)) {
    const fd = fs.openSync(link, 'r');
    const st = fs.fstatSync(fd);
    if (st.size === RAM) return { fd, ino: st.ino };
    fs.closeSync(fd);
  }
  throw new Error(`QEMU (pid ${pid}) holds no memfd of ${RAM} bytes: is its RAM not memory-backend-memfd?`);
}

function read(fd: number): Counters {
  const b = Buffer.alloc(32);
  fs.readSync(fd, b, 0, 32, STAT);
  return { magic: b.readUInt32LE(0), edu: b.readUInt32LE(4), heartbeat: b.readBigUInt64LE(8), rounds: b.readUInt32LE(16), ok: b.readUInt32LE(20), bad: b.readUInt32LE(24) };
}

const shown = (c: Counters): string => JSON.stringify(c, (_, v) => (typeof v === 'bigint' ? String(v) : v));

async function until(fd: number, what: string, ms: number, done: (c: Counters) => boolean): Promise<Counters> {
  const deadline = Date.now() + ms;
  for (;;) {
    const c = read(fd);
    if (done(c)) return c;
    assert.ok(Date.now() < deadline, `${what} within ${ms / 1000} s; the guest's counters: ${shown(c)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The longest time the heartbeat stood still between samples (ms), and whether it ever went back. */
function longestStall(samples: readonly { t: number; beat: bigint }[]): { stallMs: number; wentBack: boolean } {
  let stallMs = 0;
  let wentBack = false;
  let since = samples[0]!.t;
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1]!, samples[i]!];
    if (b.beat < a.beat) wentBack = true;
    if (b.beat !== a.beat) {
      // From the first sample that saw the old value to the first that saw a new one.
      stallMs = Math.max(stallMs, b.t - since);
      since = b.t;
    }
  }
  return { stallMs, wentBack };
}

/** The QEMU trace logs of the case (one per QEMU: `-D` expands %d to the pid), for a failure's report. */
function traceLogs(dir: string): string {
  return fs
    .readdirSync(dir)
    .filter((f) => /^qemu-\d+\.log$/.test(f))
    .map((f) => `--- ${f}\n${fs.readFileSync(join(dir, f), 'utf8').split('\n').slice(-80).join('\n')}`)
    .join('\n');
}

/** What a case leaves, however it ends: the memfd it read, the run (stopped with SIGINT if still up), its folder. */
async function cleanUp(dir: string, ram: { fd: number } | undefined, run: Awaited<ReturnType<typeof startRun>> | undefined): Promise<void> {
  if (ram) fs.closeSync(ram.fd);
  if (run && run.child.exitCode === null) {
    run.child.kill('SIGINT');
    await run.ended;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The lab's QEMU 11.1 and the bus-reset edu, on vfio-pci and resettable, as the cases start. */
function labSetup(): { qemu: string; bdf: string; group: number } {
  const qemu = process.env.VFIOKIT_LAB_QEMU_CPR;
  assert.ok(qemu, 'VFIOKIT_LAB_QEMU_CPR is not set: the x86 profile names QEMU 11.1 from the sid root (scripts/fetch-qemu.sh sid; scripts/install.sh runs it)');
  const bdf = labDeviceBdf('bus-reset');
  assert.equal(driverOf(bdf), 'vfio-pci', 'the lab starts with bus-reset on vfio-pci');
  // What makes QEMU leave it alone (cpr-reset.ts): a reset, and not a PM one without FLR.
  assert.equal(fs.readFileSync(`${DEVICES}/${bdf}/reset_method`, 'utf8').trim(), 'bus');
  return { qemu, bdf, group: iommuGroupOf(bdf) };
}

export const cases: { name: string; timeoutMs?: number; run: () => Promise<string[] | undefined> }[] = [
  {
    name: 'vfiokit upgrade hands a running KVM guest with the bus-reset edu by vfio-pci from QEMU 11.1 to a new 11.1 process: the guest runs on, edu DMA goes on landing, the old QEMU is gone and the new one owns the device',
    timeoutMs: 900_000,
    run: async () => {
      const { qemu, bdf, group } = labSetup();
      assert.ok(fs.existsSync('/dev/kvm'), 'the guest has no /dev/kvm: the x86 profile loads kvm_amd (its CPU, TCG -cpu max, has SVM); see the console for insmod errors');
      const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-upgrade-lab-'));
      let ram: { fd: number; ino: number } | undefined;
      let run: Awaited<ReturnType<typeof startRun>> | undefined;
      try {
        const elf = buildGuest(dir);
        // QEMU's own account of any VFIO reset and of the cpr hand-over, one
        // log per process (the new QEMU inherits the arguments); a handful
        // of events (config writes are few: the guest sets its command
        // register once), not vfio_region_*, which every BAR access would log.
        const traces = ['vfio_pci_reset*', 'vfio_pci_hot_reset*', 'vfio_cpr*', 'vfio_device_reset_handler', 'vfio_pci_write_config'].flatMap((t) => ['-trace', t]);
        const started = Date.now();
        run = await startRun(bdf, dir, { name: GUEST, accel: 'kvm', runOptions: ['--qemu', qemu], qemuArgs: ['-display', 'none', '-kernel', elf, '-D', join(dir, 'qemu-%d.log'), ...traces] });
        const oldPid = run.qemuPid;
        ram = openGuestRam(oldPid);
        const ready = await until(ram.fd, 'the guest found edu and finished 3 DMA rounds', 400_000, (c) => c.magic === MAGIC && c.rounds >= 3);
        assert.notEqual(ready.edu, 0xffffffff, 'the guest found no edu (1234:11e8) on its PCI buses');
        assert.equal(ready.bad, 0, `a DMA round came back wrong before the upgrade: ${ready.rounds} rounds, ${ready.bad} bad`);
        const bootS = (Date.now() - started) / 1000;
        progress(`guest ready after ${bootS.toFixed(1)} s: ${ready.rounds} DMA rounds`);
        assert.deepEqual(holders(group), [oldPid], 'the old QEMU holds the group');
        const qmpPath = /QMP monitor at (\S+);/.exec(run.out().stdout)![1]!;
        assert.equal(await qmpStatus(qmpPath), 'running');

        // The upgrade, the heartbeat sampled all the while.
        const samples: { t: number; beat: bigint }[] = [];
        const up = spawn(process.execPath, [BIN, '--json', 'upgrade', GUEST], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } });
        let stdout = '';
        let stderr = '';
        up.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        up.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const code = new Promise<number | null>((resolve) => up.on('close', resolve));
        let upgrading = true;
        void code.then(() => (upgrading = false));
        const upStarted = Date.now();
        while (upgrading) {
          samples.push({ t: Date.now(), beat: read(ram.fd).heartbeat });
          await new Promise((r) => setTimeout(r, 2));
        }
        const upgradeS = (Date.now() - upStarted) / 1000;
        progress(`vfiokit upgrade ended after ${upgradeS.toFixed(1)} s`);
        if ((await code) !== 0) {
          // The run says why QEMU ended once it has wound up.
          const ended = await Promise.race([run.ended, new Promise((r) => setTimeout(() => r('still running'), 60_000))]);
          // In full on the console: a case's failure detail keeps only its first lines.
          progress(`vfiokit upgrade failed:\n${stdout}\n${stderr}\nvfiokit run (${String(ended)}):\n${run.out().stdout}\n${run.out().stderr}\nQEMU traces:\n${traceLogs(dir)}`);
          assert.fail(`vfiokit upgrade failed (the guest's console has the run's output and QEMU's traces): ${stdout.trim()} ${stderr.trim()}`);
        }
        const report = JSON.parse(stdout) as UpgradeReport;
        const newPid = report.new.pid;
        assert.equal(report.old.pid, oldPid);
        assert.equal(report.old.exitCode, 0, JSON.stringify(report.old));
        assert.throws(() => process.kill(oldPid, 0), 'the old QEMU is gone');
        assert.equal(report.new.status, 'running');

        // The new QEMU owns the device and the guest's RAM.
        assert.deepEqual(holders(group), [newPid], 'the new QEMU alone holds the group');
        assert.ok(memfds(newPid).some((l) => fs.statSync(l).ino === ram!.ino), 'the new QEMU maps the same guest RAM memfd');
        const locked = vmLckKiB(newPid);
        assert.ok(locked >= RAM / 1024, `the pinned guest RAM is charged to the new QEMU: VmLck ${locked} kB`);
        assert.equal(await qmpStatus(qmpPath), 'running', 'the monitor at the operator\'s path is the new QEMU\'s, and the guest runs');

        // The guest runs on, and edu's DMA goes on landing under the new QEMU.
        const atHandOver = read(ram.fd);
        const after = await until(ram.fd, 'three more DMA rounds under the new QEMU', 300_000, (c) => c.rounds >= atHandOver.rounds + 3);
        samples.push({ t: Date.now(), beat: after.heartbeat });
        const { stallMs, wentBack } = longestStall(samples);
        assert.equal(wentBack, false, 'the heartbeat went back: the guest was reset');
        assert.ok(after.heartbeat > atHandOver.heartbeat, 'the heartbeat grows under the new QEMU');
        assert.equal(after.bad, 0, `DMA rounds that came back wrong: ${after.bad} of ${after.rounds}`);
        assert.equal(after.ok, after.rounds);
        assert.equal(fs.readFileSync(`${DEVICES}/${bdf}/enable`, 'utf8').trim(), '1', 'the device stays enabled');

        // The run waits on the new QEMU: it ends with it, and gives the device back as it found it.
        process.kill(newPid, 'SIGTERM');
        const ended = await run.ended;
        assert.equal(ended, 0, run.out().stdout + run.out().stderr);
        assert.equal(driverOf(bdf), 'vfio-pci');
        assert.deepEqual(holders(group), []);
        const pause =
          `guest pause during vfiokit upgrade: ${stallMs} ms seen from its heartbeat (sampled every ~${((samples.at(-1)!.t - samples[0]!.t) / samples.length).toFixed(1)} ms); ` +
          `query-migrate downtime ${report.downtimeMs} ms; ${report.pauseUpperBoundMs} ms from migrate to the new QEMU answering`;
        progress(pause);
        return [
          pause,
          `edu DMA rounds: ${ready.rounds} before the upgrade, ${atHandOver.rounds} when it ended, ${after.rounds} at the end, none bad; ` +
            `guest ready after ${bootS.toFixed(1)} s, upgrade ${upgradeS.toFixed(1)} s (QEMU 11.1 on KVM nested in the lab's TCG guest)`,
        ];
      } finally {
        await cleanUp(dir, ram, run);
      }
    },
  },
  {
    // What the lab found first with this device: under TCG the old QEMU died
    // with SIGSEGV as the migration started. Now refused before anything starts.
    name: 'vfiokit upgrade refuses a TCG guest holding the bus-reset edu before anything starts, naming its interrupts, and the guest and its edu DMA run on under the old QEMU 11.1',
    timeoutMs: 600_000,
    run: async () => {
      const { qemu, bdf, group } = labSetup();
      const dir = fs.mkdtempSync(join(os.tmpdir(), 'vfiokit-upgrade-lab-'));
      let ram: { fd: number; ino: number } | undefined;
      let run: Awaited<ReturnType<typeof startRun>> | undefined;
      try {
        const elf = buildGuest(dir);
        run = await startRun(bdf, dir, { name: GUEST, accel: 'tcg', runOptions: ['--qemu', qemu], qemuArgs: ['-display', 'none', '-kernel', elf] });
        ram = openGuestRam(run.qemuPid);
        const ready = await until(ram.fd, 'the guest found edu and finished 2 DMA rounds', 400_000, (c) => c.magic === MAGIC && c.rounds >= 2);
        const qmpPath = /QMP monitor at (\S+);/.exec(run.out().stdout)![1]!;
        const up = runVfiokit(['upgrade', GUEST]);
        assert.equal(up.status, 5, up.stdout + up.stderr);
        // edu has INTA and an MSI capability (hw/misc/edu.c).
        assert.match(up.stderr, new RegExp(`guest ${GUEST} cannot be upgraded: its QEMU runs without KVM, and ${bdf.replace(/\./g, '\\.')} has an interrupt pin \\(INTx\\), MSI\\.`));
        assert.match(up.stderr, /start a guest that is to be upgraded under KVM \(vfiokit run --accel kvm, the default\)/);
        assert.doesNotMatch(run.out().stdout, /new QEMU/, 'no new QEMU was started');
        assert.deepEqual(holders(group), [run.qemuPid], 'the old QEMU still holds the group, alone');
        assert.equal(await qmpStatus(qmpPath), 'running', 'the guest runs on under the old QEMU');
        const after = await until(ram.fd, 'two more DMA rounds under the old QEMU', 300_000, (c) => c.rounds >= ready.rounds + 2);
        assert.equal(after.bad, 0, `DMA rounds that came back wrong: ${after.bad} of ${after.rounds}`);
        run.child.kill('SIGINT');
        assert.equal(await run.ended, 130, run.out().stdout + run.out().stderr);
        assert.equal(driverOf(bdf), 'vfio-pci');
        assert.deepEqual(holders(group), []);
        return undefined;
      } finally {
        await cleanUp(dir, ram, run);
      }
    },
  },
];
