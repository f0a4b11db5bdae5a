// `vfiokit run GUEST.yaml`: a guest's whole life with its devices, managed
// the way libvirt's <hostdev managed='yes'> manages it
// (qemuProcessPrepareHostdevs -> virHostdevPreparePCIDevices at start,
// virHostdevReAttachPCIDevices at stop): check the plan, bind its groups,
// start QEMU with the planned command line and a locked-memory limit that
// covers the guest, wait for it, and however it ends (a clean exit, a crash,
// a failed start, Ctrl-C or SIGTERM to vfiokit) reset each device the run
// moved where the kernel can and give it back to its driver. Devices that
// were on vfio-pci before the run stay there: the run gives back only what
// it took.
//
// QEMU is tied to vfiokit (qemu-bridge's spawnTied: the parent-death
// signal), so a vfiokit killed with SIGKILL takes QEMU with it; the devices
// then stay on vfio-pci with their records in the state folder, and
// `vfiokit unbind` gives them back.
import { Command, Option } from 'commander';
import {
  assertPlanOk,
  fileBindingStore,
  groupHolders,
  memlockForVmm,
  resetFunction,
  unbindGroup,
  type BindResult,
  type HostFs,
  type ResetOutcome,
  type UnbindResult,
  type VmmMemlock,
} from '@vfiokit/core';
import type { RunningQemu } from '@vfiokit/qemu-bridge';
import { action, RunState, withRealHostExamples } from '../program';
import type { CommandContext, HostSession } from '../context';
import { CliError, reportOf } from '../errors';
import { ExitCode } from '../exit-codes';
import { onInterrupt } from '../cleanup';
import { checkpoint } from '../checkpoint';
import { formatSize } from '../sizes';
import { bindGroups, bindText, collectRule, safetyOverride, unbindText } from './bind';
import { loadQemuBridge } from './attach';
import { planOnHost } from './plan';
import { recordRunningGuest, serveControl, upgradeRunningGuest } from './upgrade';

export interface RunOptions {
  readonly force?: string[];
  readonly accel: 'kvm' | 'tcg';
  readonly qemu?: string;
  readonly qmp?: string;
}

/** What a run did, as `--json` reports it. */
export interface RunReport {
  readonly guest: string;
  readonly groups: readonly number[];
  readonly bound: readonly BindResult[];
  readonly memlock: VmmMemlock & { readonly applied: boolean };
  readonly qemu: { readonly argv: readonly string[]; readonly pid: number | null; readonly exitCode: number | null; readonly signal: string | null; readonly stderr: string };
  readonly resets: readonly ResetOutcome[];
  readonly restored: readonly UnbindResult[];
}

/** How long the devices may stay held once QEMU is gone (the kernel releases them as QEMU's fds close). */
const RELEASE_WAIT_MS = 10_000;
/** How long QEMU gets to end after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** Wait (synchronously, for the exit path too) until no process holds any of `groups` open. */
function waitReleasedSync(fs: HostFs, groups: readonly number[], ms: number): void {
  const deadline = Date.now() + ms;
  while (groups.some((g) => groupHolders(fs, g).length > 0) && Date.now() < deadline) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
}

async function waitReleased(fs: HostFs, groups: readonly number[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (groups.some((g) => groupHolders(fs, g).length > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Reset every device the run moved to vfio-pci (bridges are never bound) and
 * give each back to the driver it had. Synchronous, so the exit path can run
 * it too. Returns what was done and every failure.
 */
function giveBack(session: HostSession, bound: readonly BindResult[]): { resets: ResetOutcome[]; restored: UnbindResult[]; failures: string[] } {
  const store = fileBindingStore(session.stateDir);
  const resets: ResetOutcome[] = [];
  const restored: UnbindResult[] = [];
  const failures: string[] = [];
  for (const r of [...bound].reverse()) {
    const moved = r.changes.map((c) => c.address);
    if (moved.length === 0) continue;
    for (const c of r.changes) if (c.to === 'vfio-pci') resets.push(resetFunction(session.fs, c.address));
    try {
      restored.push(unbindGroup(session.fs, r.group, { store, onlyRecorded: true, devices: moved }));
    } catch (err) {
      failures.push(`group ${r.group} (${moved.join(', ')}): ${reportOf(err).message}`);
    }
  }
  return { resets, restored, failures };
}

function resetText(r: ResetOutcome): string {
  return r.done ? `reset ${r.address} (the kernel tries ${r.methods.join(', ') || 'its methods'})\n  $ ${r.step}` : `no reset for ${r.address}: ${r.reason}`;
}

function memlockText(m: RunReport['memlock'], mock: boolean): string {
  const need = `the guest needs RLIMIT_MEMLOCK of ${formatSize(m.requiredBytes)}`;
  if (m.raiseTo === undefined) return `${need}: ${m.reason}`;
  return `${need}: ${m.reason}${mock ? ' (a simulated host: its limits are not this machine\'s, so QEMU starts with the inherited one)' : ''}`;
}

export async function runGuest(ctx: CommandContext, file: string, qemuArgs: readonly string[], opts: RunOptions): Promise<ExitCode> {
  const session = await ctx.host();
  const mock = session.backend === 'mock';
  const { readGuestSpec } = await import('../guest-spec');
  const spec = readGuestSpec(file);
  // Check everything before anything changes: the plan (viability, safety
  // rules, guest/host IOMMU), the locked-memory limit, QEMU itself.
  const plan = assertPlanOk(planOnHost(session.fs, spec, { ...(opts.force ? { force: opts.force } : {}), memlock: 'unlimited' }));
  const memlock = { ...memlockForVmm(session.fs, plan.dma.topology.requiredMemlock), applied: false };
  const qb = await loadQemuBridge();
  const { qemuCommandLineOf } = await import('../qemu-args');
  const binary = opts.qemu ?? (spec.machine === 'q35' ? 'qemu-system-x86_64' : 'qemu-system-ppc64');
  if (qb.resolveProgram(binary) === undefined) {
    throw new CliError('QEMU_NOT_FOUND', `${binary} is not installed (not found on PATH)`, ExitCode.Unavailable, spec.machine === 'q35' ? 'apt-get install qemu-system-x86, or give --qemu PATH' : 'apt-get install qemu-system-ppc, or give --qemu PATH');
  }
  // A QEMU that can hand the guest to a newer one later (cpr-transfer with
  // VFIO, 10.1+) starts it that way: RAM in a shared memfd, aux-ram-share.
  // An older one, or one whose version cannot be read, starts it as before;
  // `vfiokit upgrade` then says why it cannot.
  let release: import('@vfiokit/qemu-bridge').QemuRelease | undefined;
  try {
    release = qb.qemuReleaseOf(binary);
  } catch {
    release = undefined;
  }
  const cpr = release !== undefined && qb.cprTransferRefusal(release, binary) === undefined;
  const dir = qb.createRunDir('vfiokit-run-');
  const qmpPath = opts.qmp ?? `${dir.path}/qmp.sock`;
  const cmdline = qemuCommandLineOf(plan, { accel: opts.accel, qmp: { path: qmpPath }, binary, extraArgs: qemuArgs, ...(cpr ? { cpr: true } : {}) });
  const groups = plan.groups.map((g) => g.id);
  ctx.out.line(`guest ${spec.name}: ${spec.machine}, ${formatSize(spec.memoryBytes)} RAM, groups ${groups.join(', ')}`);

  const store = fileBindingStore(session.stateDir);
  let bound: BindResult[] = [];
  let qemu: RunningQemu | undefined;
  let argv: readonly string[] = cmdline.argv;
  // A new QEMU an upgrade is starting, and the upgrade itself while it runs.
  let incoming: RunningQemu | undefined;
  let upgrading: Promise<unknown> | undefined;
  let unrecord: (() => void) | undefined;
  let control: import('node:net').Server | undefined;
  let given: ReturnType<typeof giveBack> | undefined;
  // Leaving without unwinding (a second Ctrl-C, an uncaught error, the
  // grace period over): kill QEMU, wait for its fds to close, and give the
  // devices back synchronously on the way out.
  const forget = onInterrupt(() => {
    qemu?.kill();
    incoming?.kill();
    waitReleasedSync(session.fs, groups, 3_000);
    if (given === undefined) giveBack(session, bound);
    dir.remove();
  });
  const stopQemu = () => void qemu?.stop(STOP_GRACE_MS);
  ctx.signal.addEventListener('abort', stopQemu, { once: true });
  let failure: unknown;
  try {
    bound = bindGroups(session.fs, groups, { store, force: safetyOverride(opts.force) });
    for (const r of bound) ctx.out.line(bindText(r));
    ctx.signal.throwIfAborted();
    ctx.out.line(memlockText(memlock, mock));
    const raise = !mock && memlock.raiseTo !== undefined;
    ctx.out.line(`$ ${raise ? `prlimit --memlock=${memlock.raiseTo!.soft}:${memlock.raiseTo!.hard ?? 'unlimited'} ` : ''}${cmdline.readable.replace(/ \\\n\s*/g, ' ')}`);
    qemu = await qb.launchQemu(cmdline.argv, { path: qmpPath }, { startTimeoutMs: 120_000, commandTimeoutMs: 30_000, runDir: dir, signal: ctx.signal, ...(raise ? { memlock: memlock.raiseTo! } : {}) });
    memlock.applied = raise;
    // The monitor serves one client at a time: let go of it, so the
    // operator can `vfiokit attach --qmp` while the guest runs.
    await qemu.qmp.close();
    ctx.out.line(`QEMU is running (pid ${qemu.pid}), QMP monitor at ${qmpPath}; it ends with vfiokit (Ctrl-C stops the guest and gives the devices back)`);
    // `vfiokit upgrade GUEST` finds this run by the guest's name and asks it
    // over this socket to move the guest to a new QEMU.
    const controlPath = `${dir.path}/control.sock`;
    unrecord = recordRunningGuest(session.stateDir, spec.name, controlPath);
    control = serveControl(controlPath, (req, log) => {
      const job = upgradeRunningGuest(
        {
          guest: spec.name,
          dir,
          qmpPath,
          ...(raise ? { memlock: memlock.raiseTo! } : {}),
          fs: session.fs,
          devices: plan.groups.flatMap((g) => g.functions.map((f) => f.address)),
          current: () => ({ qemu: qemu!, argv, release }),
          handOver: (q, a, r) => {
            qemu = q;
            argv = a;
            release = r;
          },
          starting: (q) => {
            incoming = q;
          },
        },
        req.qemu,
        (line) => {
          ctx.out.line(line);
          log(line);
        },
      );
      upgrading = job.catch(() => undefined);
      return job;
    });
    await checkpoint('run-qemu-up', ctx.signal);
    const aborted = new Promise<'aborted'>((resolve) => {
      if (ctx.signal.aborted) resolve('aborted');
      else ctx.signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    for (;;) {
      const waited: RunningQemu = qemu!;
      await Promise.race([waited.exited, aborted]);
      if (ctx.signal.aborted) break;
      // The old QEMU quits at the end of an upgrade: wait on the new one.
      if (upgrading !== undefined) await upgrading;
      if (qemu === waited) break;
    }
    if (ctx.signal.aborted) {
      await qemu.stop(STOP_GRACE_MS);
      ctx.signal.throwIfAborted();
    }
    const code = await qemu.exited;
    const signal = qemu.exitSignal();
    ctx.out.line(signal ? `QEMU was killed by ${signal}` : `QEMU exited with ${code}`);
    if (signal !== null || code !== 0) {
      const last = qemu.stderr().trim().split('\n').pop();
      throw new CliError('QEMU_EXITED', `QEMU ${signal ? `was killed by ${signal}` : `exited with ${code}`}${last ? `: ${last}` : ''}`, ExitCode.QemuFailure, undefined, {
        details: qemu.stderr().trim().split('\n').filter(Boolean),
      });
    }
  } catch (err) {
    failure = err;
    // QEMU's stderr opens with warnings (KVM's CPU count, a deprecated
    // option): the line that says why it stopped is the last one.
    const code = (err as { code?: unknown }).code;
    if (qemu === undefined && typeof code === 'string' && code.startsWith('QEMU_') && !ctx.signal.aborted) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim().split('\n').filter(Boolean);
      failure = new CliError('QEMU_START_FAILED', `QEMU did not start: ${stderr.pop() ?? (err as Error).message}`, ExitCode.QemuFailure, "QEMU's own words are above; the devices went back to their drivers", {
        cause: err,
        details: stderr,
      });
    }
  } finally {
    ctx.signal.removeEventListener('abort', stopQemu);
    control?.close();
    unrecord?.();
    incoming?.kill();
    if (qemu !== undefined) await qemu.stop(STOP_GRACE_MS);
    // QEMU's fds close as it exits; the kernel may finish releasing the
    // devices a moment later (vfio_device_fops_release runs on the last fput).
    await waitReleased(session.fs, groups, RELEASE_WAIT_MS);
    given = giveBack(session, bound);
    forget();
    dir.remove();
  }
  for (const r of given.resets) ctx.out.line(resetText(r));
  for (const r of given.restored) ctx.out.line(unbindText(r));
  if (given.failures.length > 0) {
    // What stays on vfio-pci matters more than why QEMU ended: say it first.
    throw new CliError(
      'RUN_GIVE_BACK_FAILED',
      `the run could not give every device back: ${given.failures[0]}${failure ? `; QEMU: ${reportOf(failure).message}` : ''}`,
      ExitCode.HostFailure,
      `give them back by hand: vfiokit unbind ${groups.join(' ')}`,
      { details: given.failures },
    );
  }
  if (failure !== undefined) throw failure;
  const report: RunReport = {
    guest: spec.name,
    groups,
    bound,
    memlock,
    qemu: { argv, pid: qemu?.pid ?? null, exitCode: (await qemu?.exited) ?? null, signal: qemu?.exitSignal() ?? null, stderr: qemu?.stderr() ?? '' },
    resets: given.resets,
    restored: given.restored,
  };
  ctx.out.result(report, () => `guest ${spec.name} ended; every device the run moved is back on its driver`);
  return ExitCode.Ok;
}

export function runCommand(state: RunState): Command {
  const cmd = new Command('run')
    .description(
      "run a guest from a YAML spec, managed like libvirt's managed='yes': check, bind its groups, start QEMU with the planned command line (RLIMIT_MEMLOCK raised or refused with the number), wait, and however it ends reset each device the run moved and give it back",
    )
    .argument('<guest.yaml>', 'guest spec (see packages/cli/examples/*.yaml), - for standard input')
    .argument('[qemu-args...]', 'after --: more QEMU arguments, as given (a disk, a display, -S)')
    .addOption(new Option('--force <rule>', 'waive a host-safety rule for devices the run detaches; repeatable').argParser(collectRule))
    .addOption(new Option('--accel <accel>', 'QEMU accelerator').choices(['kvm', 'tcg']).default('kvm'))
    .option('--qemu <binary>', 'the QEMU to run (default qemu-system-x86_64 for q35, qemu-system-ppc64 for pseries)')
    .option('--qmp <socket>', "QEMU's QMP monitor on this UNIX socket, for 'vfiokit attach' while the guest runs (default: in a private folder removed after)")
    .action(action(state, (ctx, file: string, qemuArgs: string[], opts: RunOptions) => runGuest(ctx, file, qemuArgs, opts)));
  // A simulated host's devices are not on this machine, so QEMU refuses them:
  // every example needs a real host.
  return withRealHostExamples(
    cmd,
    'vfiokit run guest.yaml -- -drive file=disk.qcow2,if=virtio -nographic',
    'vfiokit run --accel tcg guest.yaml -- -S -display none',
  );
}
