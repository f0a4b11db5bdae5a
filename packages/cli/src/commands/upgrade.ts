// `vfiokit upgrade GUEST [--qemu BINARY]`: the QEMU under a guest that
// `vfiokit run` manages is replaced by a new QEMU process (a newer build, or
// the same one restarted) with QEMU's cpr-transfer mode, the guest running on
// and its VFIO devices keeping their mappings (see qemu-bridge's
// process/cpr.ts for the protocol and the QEMU sources it follows).
//
// The run does the work, not this command: the run owns QEMU (tied to it by
// the parent-death signal, its memlock limit, its run folder, giving the
// devices back however the guest ends), so the new QEMU must be the run's
// child too, and the run must then wait on it instead of the old one. This
// command finds the run by the guest's name (a record in the state folder
// that the run keeps while it lives, like libvirt's per-domain status XML)
// and asks it over the run's control socket, one JSON request, then prints
// what the run reports, line by line, as it happens.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { Command } from 'commander';
import { processAlive, type HostFs } from '@vfiokit/core';
import type { RunDir, RunningQemu } from '@vfiokit/qemu-bridge';
import { action, withRealHostExamples, type RunState } from '../program';
import type { CommandContext } from '../context';
import { CliError, reportOf } from '../errors';
import { ExitCode } from '../exit-codes';
import { loadQemuBridge } from './attach';
import { devicesCprTransferNeedsKvmFor, devicesQemuResetsOnIncoming } from '../cpr-reset';

// ---- where a running guest is found ----

interface RunRecord {
  readonly guest: string;
  /** The `vfiokit run` process. */
  readonly pid: number;
  /** Its control socket. */
  readonly control: string;
}

function recordPath(stateDir: string, guest: string): string {
  return join(stateDir, 'running', `${encodeURIComponent(guest)}.json`);
}

/**
 * Records that this process runs `guest` and serves requests on `control`.
 * Refuses a guest that another live run already runs (two QEMUs of one name
 * would share the record). Returns the function that removes the record.
 */
export function recordRunningGuest(stateDir: string, guest: string, control: string): () => void {
  const path = recordPath(stateDir, guest);
  mkdirSync(join(stateDir, 'running'), { recursive: true });
  const other = readRecord(path);
  if (other !== undefined && other.pid !== process.pid && processAlive(other.pid)) {
    throw new CliError('RUN_GUEST_RUNNING', `guest ${guest} is already running (vfiokit run, pid ${other.pid})`, ExitCode.Refused, `stop that run first, or give this guest another name`);
  }
  const tmp = `${path}.${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ guest, pid: process.pid, control } satisfies RunRecord)}\n`);
  renameSync(tmp, path);
  return () => {
    if (readRecord(path)?.pid === process.pid) rmSync(path, { force: true });
  };
}

function readRecord(path: string): RunRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
  } catch {
    return undefined;
  }
}

function findRun(stateDir: string, guest: string): RunRecord {
  const r = readRecord(recordPath(stateDir, guest));
  if (r === undefined) {
    throw new CliError('UPGRADE_GUEST_NOT_RUNNING', `no guest named ${guest} is running under vfiokit run on this host`, ExitCode.NotFound, "start it with 'vfiokit run GUEST.yaml' (the name is the spec's name)");
  }
  if (!processAlive(r.pid)) {
    rmSync(recordPath(stateDir, guest), { force: true });
    throw new CliError('UPGRADE_GUEST_NOT_RUNNING', `guest ${guest} is not running: its vfiokit run (pid ${r.pid}) is gone`, ExitCode.NotFound, "start it again with 'vfiokit run GUEST.yaml'");
  }
  return r;
}

// ---- the request, from both ends ----

interface UpgradeRequest {
  readonly op: 'upgrade';
  /** The new QEMU binary; the running one when absent. */
  readonly qemu?: string;
}

/** What the run reports once the new QEMU runs the guest. */
export interface UpgradeReport {
  readonly guest: string;
  readonly old: { readonly pid: number; readonly version: string; readonly exitCode: number | null };
  readonly new: { readonly pid: number; readonly version: string; readonly binary: string; readonly argv: readonly string[]; readonly status: string };
  /** The machine type both QEMUs ran (`pc-q35-11.1`). */
  readonly machine: string;
  /** query-migrate's downtime on the old QEMU: the guest stopped, its state sent (ms). */
  readonly downtimeMs: number | null;
  /** From the migrate command to the new QEMU answering that the guest runs (ms): the pause is at most this. */
  readonly pauseUpperBoundMs: number;
}

type Reply = { line: string } | { ok: true; report: UpgradeReport } | { ok: false; error: { code: string; message: string; hint?: string; exitCode: ExitCode } };

/**
 * Serves upgrade requests on `path` for the run; `upgrade` does one (the
 * run's), `log` lines go to the requester as they happen. One at a time.
 */
export function serveControl(path: string, upgrade: (req: UpgradeRequest, log: (line: string) => void) => Promise<UpgradeReport>): Server {
  let busy = false;
  const server = createServer((socket) => {
    let buf = '';
    const send = (r: Reply) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(r)}\n`);
    };
    socket.on('error', () => {});
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      socket.removeAllListeners('data');
      let req: UpgradeRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as UpgradeRequest;
        if (req.op !== 'upgrade') throw new Error(`unknown request ${JSON.stringify(req.op)}`);
      } catch (err) {
        send({ ok: false, error: { code: 'UPGRADE_BAD_REQUEST', message: (err as Error).message, exitCode: ExitCode.Internal } });
        socket.end();
        return;
      }
      if (busy) {
        send({ ok: false, error: { code: 'UPGRADE_IN_PROGRESS', message: 'another upgrade of this guest is under way', hint: 'wait for it to end', exitCode: ExitCode.Refused } });
        socket.end();
        return;
      }
      busy = true;
      upgrade(req, (line) => send({ line }))
        .then((report) => send({ ok: true, report }))
        .catch((err) => {
          const e = reportOf(err);
          send({ ok: false, error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}), exitCode: e.exitCode } });
        })
        .finally(() => {
          busy = false;
          socket.end();
        });
    });
  });
  server.listen(path);
  return server;
}

async function requestUpgrade(control: string, req: UpgradeRequest, onLine: (line: string) => void): Promise<UpgradeReport> {
  return new Promise((resolve, reject) => {
    const socket = connect(control);
    let buf = '';
    let done = false;
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const r = JSON.parse(buf.slice(0, nl)) as Reply;
        buf = buf.slice(nl + 1);
        if ('line' in r) onLine(r.line);
        else if (r.ok) {
          done = true;
          resolve(r.report);
        } else {
          done = true;
          reject(new CliError(r.error.code, r.error.message, r.error.exitCode, r.error.hint));
        }
      }
    });
    socket.on('error', (err) => reject(new CliError('UPGRADE_RUN_UNREACHABLE', `the guest's vfiokit run does not answer on ${control}: ${err.message}`, ExitCode.Internal)));
    socket.on('close', () => {
      if (!done) reject(new CliError('UPGRADE_RUN_UNREACHABLE', `the guest's vfiokit run closed ${control} before the upgrade ended; see that run's output`, ExitCode.QemuFailure));
    });
  });
}

// ---- the run's side: one cpr-transfer ----

/** What the run lends an upgrade. */
export interface RunningGuest {
  readonly guest: string;
  readonly dir: RunDir;
  /** The QMP socket the operator knows; the new QEMU takes it over. */
  readonly qmpPath: string;
  readonly memlock?: { readonly soft: bigint; readonly hard: bigint | undefined };
  /** The host, and the PCI functions the guest holds through VFIO. */
  readonly fs: HostFs;
  readonly devices: readonly string[];
  /** The QEMU running the guest now, its argv and release (undefined: unknown). */
  current(): { readonly qemu: RunningQemu; readonly argv: readonly string[]; readonly release: import('@vfiokit/qemu-bridge').QemuRelease | undefined };
  /** The new QEMU runs the guest: the run waits on it from now on. */
  handOver(qemu: RunningQemu, argv: readonly string[], release: import('@vfiokit/qemu-bridge').QemuRelease): void;
  /** A new QEMU is being started (kill it if the run must end), or no longer (undefined). */
  starting(qemu: RunningQemu | undefined): void;
}

let upgrades = 0;

/**
 * Replaces the guest's QEMU with a new process of `binary` by cpr-transfer.
 * Refuses (changing nothing) when either QEMU is older than cpr-transfer
 * with VFIO needs, or when the guest holds a device the new QEMU would reset
 * under the running guest. On a failure after the migrate command the old QEMU keeps
 * the guest (QEMU resumes it after a failed outgoing migration) and the new
 * one is killed.
 */
export async function upgradeRunningGuest(g: RunningGuest, binary: string | undefined, log: (line: string) => void): Promise<UpgradeReport> {
  const qb = await loadQemuBridge();
  const { qemu: old, argv: oldArgv, release: oldRelease } = g.current();
  const hint = `start the guest under QEMU ${qb.CPR_TRANSFER_WITH_VFIO.major}.${qb.CPR_TRANSFER_WITH_VFIO.minor} or later (vfiokit run --qemu BINARY); Debian has it in sid (scripts/fetch-qemu.sh sid)`;
  if (oldRelease === undefined) {
    throw new CliError('UPGRADE_QEMU_UNKNOWN', `guest ${g.guest} runs under ${oldArgv[0]}, whose version vfiokit could not read at start, so it was not started for cpr-transfer`, ExitCode.Refused, hint);
  }
  const oldRefusal = qb.cprTransferRefusal(oldRelease, `the QEMU running guest ${g.guest} (${oldArgv[0]}, pid ${old.pid})`);
  if (oldRefusal !== undefined) throw new CliError('UPGRADE_QEMU_TOO_OLD', oldRefusal, ExitCode.Refused, hint);
  const target = binary ?? oldArgv[0]!;
  if (qb.resolveProgram(target) === undefined) {
    throw new CliError('QEMU_NOT_FOUND', `${target} is not installed (not found on PATH)`, ExitCode.Unavailable, 'give --qemu the path of the new QEMU');
  }
  const newRelease = qb.qemuReleaseOf(target);
  const newRefusal = qb.cprTransferRefusal(newRelease, `the new QEMU ${target}`);
  if (newRefusal !== undefined) throw new CliError('UPGRADE_QEMU_TOO_OLD', newRefusal, ExitCode.Refused, `give --qemu a QEMU ${qb.CPR_TRANSFER_WITH_VFIO.major}.${qb.CPR_TRANSFER_WITH_VFIO.minor} or later`);
  if (!qb.atLeast(newRelease, oldRelease)) {
    throw new CliError(
      'UPGRADE_QEMU_OLDER',
      `the new QEMU ${target} is ${qb.releaseText(newRelease)}, older than the running ${qb.releaseText(oldRelease)}: QEMU migrates device state forward, and the running machine type may not exist in the older build`,
      ExitCode.Refused,
      `give --qemu a QEMU ${qb.releaseText(oldRelease)} or later`,
    );
  }

  // Before anything starts: the new QEMU resets every device
  // vfio_pci_compute_needs_reset marks while the old one still runs the
  // guest, which then dies on its next BAR access (see cpr-reset.ts).
  const marked = devicesQemuResetsOnIncoming(g.fs, g.devices);
  if (marked.length > 0) {
    throw new CliError(
      'UPGRADE_DEVICE_RESET',
      `guest ${g.guest} cannot be upgraded: ${marked.map((m) => `${m.address}: ${m.cause}`).join('; ')}. QEMU marks such a device for reset (vfio_pci_compute_needs_reset), and the new QEMU resets it while starting on the descriptors it is sent; that turns off the device's memory decoding, vfio-pci revokes its BAR mappings, and the old QEMU, still running the guest, dies on its next BAR access`,
      ExitCode.Refused,
      `the guest runs on under QEMU ${qb.releaseText(oldRelease)} (pid ${old.pid}); QEMU leaves alone a device with FLR (reset_method lists flr or af_flr, as SR-IOV virtual functions do) or with a bus reset that works (reset_method lists bus and nothing else is on its bus; the x86 lab upgraded such a device under KVM with its DMA running): assign such devices to a guest that is to be upgraded`,
    );
  }

  const n = ++upgrades;
  const ch = { main: join(g.dir.path, `cpr-${n}-main.sock`), cpr: join(g.dir.path, `cpr-${n}.sock`) };
  // The new QEMU listens at a path of its own until the old one is gone,
  // then its socket takes the operator's path (rename keeps the listening
  // socket: connect(2) resolves the path to the socket's inode).
  const nextQmp = `${g.qmpPath}.next`;
  const session = await qb.connectQmp({ path: g.qmpPath }, { connectTimeoutMs: 10_000, greetingTimeoutMs: 10_000, commandTimeoutMs: 30_000 });
  try {
    // Still before anything starts: without KVM, the old QEMU dies as the
    // migration starts if a device has interrupts (cpr-reset.ts).
    const kvm = (await session.execute('query-kvm')) as { enabled?: boolean } | undefined;
    if (kvm?.enabled !== true) {
      const bound = devicesCprTransferNeedsKvmFor(g.fs, g.devices);
      if (bound.length > 0) {
        throw new CliError(
          'UPGRADE_NEEDS_KVM',
          `guest ${g.guest} cannot be upgraded: its QEMU runs without KVM, and ${bound.map((b) => `${b.address} has ${b.interrupts}`).join('; ')}. When a cpr-transfer starts, QEMU moves each VFIO device's interrupts into KVM (vfio_cpr_set_msi_virq) without asking whether KVM runs, and the old QEMU, still running the guest, dies with SIGSEGV`,
          ExitCode.Refused,
          `the guest runs on under QEMU ${qb.releaseText(oldRelease)} (pid ${old.pid}); start a guest that is to be upgraded under KVM (vfiokit run --accel kvm, the default)`,
        );
      }
    }
    const machine = await qb.resolvedMachineType(session);
    const before = await qb.queryStatus(session);
    const argv = qb.cprTargetArgv(oldArgv, target, machine, ch).map((a) => (a.startsWith(`unix:${g.qmpPath},`) ? `unix:${nextQmp}${a.slice(`unix:${g.qmpPath}`.length)}` : a));
    log(`guest ${g.guest}: QEMU ${qb.releaseText(oldRelease)} (pid ${old.pid}) -> QEMU ${qb.releaseText(newRelease)} (${target}), machine ${machine}, guest ${before.status}`);
    let sent = 0;
    let outcome: import('@vfiokit/qemu-bridge').CprOutcome | undefined;
    let launched: RunningQemu | undefined;
    try {
      launched = await qb.launchQemu(argv, { path: nextQmp }, {
        startTimeoutMs: 120_000,
        commandTimeoutMs: 30_000,
        runDir: g.dir,
        ...(g.memlock ? { memlock: g.memlock } : {}),
        beforeConnect: async (gone) => {
          await qb.waitForSocket(ch.cpr, 60_000, gone);
          log(`new QEMU listens on ${ch.cpr}; migrate (mode cpr-transfer) on the old one`);
          sent = Date.now();
          outcome = await qb.cprTransfer(session, ch);
        },
      });
    } catch (err) {
      // Whatever failed, the old QEMU still has the guest: say so.
      const status = await qb.queryStatus(session).catch(() => undefined);
      throw new CliError(
        'UPGRADE_FAILED',
        `the upgrade of guest ${g.guest} failed: ${reportOf(err).message}`,
        ExitCode.QemuFailure,
        status ? `the old QEMU (pid ${old.pid}) keeps the guest (${status.status})` : `the old QEMU (pid ${old.pid}) did not answer after the failure`,
        { cause: err },
      );
    }
    g.starting(launched);
    const after = await qb.queryStatus(launched.qmp);
    const pause = Date.now() - sent;
    await launched.qmp.close();
    g.handOver(launched, argv, newRelease);
    g.starting(undefined);
    log(`new QEMU (pid ${launched.pid}) runs the guest (${after.status}); query-migrate downtime ${outcome?.downtimeMs ?? '?'} ms, ${pause} ms from migrate to the new QEMU answering`);
    await session.execute('quit').catch(() => undefined);
    await session.close();
    const code = await Promise.race([old.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
    if (code === 'running') old.kill();
    rmSync(g.qmpPath, { force: true });
    renameSync(nextQmp, g.qmpPath);
    log(`old QEMU (pid ${old.pid}) ${code === 'running' ? 'did not quit within 10 s and was killed' : `exited with ${code}`}; the monitor is at ${g.qmpPath} again`);
    return {
      guest: g.guest,
      old: { pid: old.pid, version: qb.releaseText(oldRelease), exitCode: code === 'running' ? null : code },
      new: { pid: launched.pid, version: qb.releaseText(newRelease), binary: target, argv, status: after.status },
      machine,
      downtimeMs: outcome?.downtimeMs ?? null,
      pauseUpperBoundMs: pause,
    };
  } finally {
    await session.close().catch(() => undefined);
  }
}

// ---- the command ----

export function upgradeCommand(state: RunState): Command {
  const cmd = new Command('upgrade')
    .description(
      "replace the QEMU under a guest that 'vfiokit run' manages with a new QEMU process (cpr-transfer, QEMU 10.1+): guest RAM stays in place, VFIO devices keep their mappings, the guest pauses only while its device state moves",
    )
    .argument('<guest>', "the guest's name (its spec's name)")
    .option('--qemu <binary>', 'the new QEMU (default: the running one, restarted)')
    .action(
      action(state, async (ctx: CommandContext, guest: string, opts: { qemu?: string }) => {
        const session = await ctx.host();
        const run = findRun(session.stateDir, guest);
        const report = await requestUpgrade(run.control, { op: 'upgrade', ...(opts.qemu ? { qemu: opts.qemu } : {}) }, (line) => ctx.out.line(line));
        ctx.out.result(report, () => `guest ${guest} now runs under QEMU ${report.new.version} (pid ${report.new.pid}); the old QEMU (pid ${report.old.pid}) is gone`);
        return ExitCode.Ok;
      }),
    );
  // The guest must be running under `vfiokit run` on a real host.
  return withRealHostExamples(cmd, 'vfiokit upgrade nfv-guest --qemu /opt/qemu-11.1/bin/qemu-system-x86_64', 'vfiokit --json upgrade nfv-guest');
}
