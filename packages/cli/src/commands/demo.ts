// `vfiokit demo`: the README's main job. A short end-to-end session on the
// built-in simulated host `workstation`: discover, check, bind, plan, map,
// and (when qemu-system-x86_64 is installed) hot-plug into a real QEMU. It
// calls the same functions the commands do, prints each step as the command
// an operator would type, and leaves nothing behind: the simulated host's
// folder, the QEMU process and its socket are removed whatever happens.
import { spawnSync } from 'node:child_process';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { bindGroup, checkViability, discoverHost, fileBindingStore, readLockedMemoryLimit, unbindGroup, type HostModel, type Plan } from '@vfiokit/core';
import type { RunningQemu } from '@vfiokit/qemu-bridge';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import type { CommandContext, HostSession } from '../context';
import { groupTree } from './ls';
import { checkDevice, checkText } from './check';
import { bindText, unbindText } from './bind';
import { planOnHost, planText } from './plan';
import { identityMapRun, mapText } from './map';
import { loadQemuBridge, placementText } from './attach';
import { ExitCode } from '../exit-codes';
import { formatSize } from '../sizes';
import { reportOf } from '../errors';
import { onInterrupt } from '../cleanup';
import { checkpoint } from '../checkpoint';

const QEMU = 'qemu-system-x86_64';

function qemuInstalled(): boolean {
  return spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
}

const FIXTURE = 'workstation';
const GPU = '0000:01:00.0';
const USB = '0000:04:00.0';
/** The example spec the plan step reads; the package ships it. */
export const DEMO_SPEC = join(__dirname, '..', '..', 'examples', 'usb-controller.yaml');

/** Prints steps as `[n/N] title` headers with the command, and their output indented. */
class Narrator {
  private step = 0;
  private readonly started = process.hrtime.bigint();

  constructor(
    private readonly ctx: CommandContext,
    private readonly steps: number,
  ) {}

  header(title: string, command?: string): void {
    this.step++;
    this.ctx.out.line('');
    this.ctx.out.line(`[${this.step}/${this.steps}] ${title}${command ? `   $ ${command}` : ''}`);
  }

  say(text: string): void {
    for (const line of text.split('\n')) this.ctx.out.line(`    ${line}`);
  }

  seconds(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e9;
  }

  elapsed(): string {
    return `${this.seconds().toFixed(1)} s`;
  }
}

function discoverStep(n: Narrator, model: HostModel): void {
  n.header('discover: IOMMU groups and what holds them', `vfiokit --mock ${FIXTURE} ls`);
  const shown = model.groups.filter((g) => g.devices.some((d) => d.address === GPU || d.address === USB));
  for (const g of shown) n.say(groupTree(g, checkViability(model, g)).join('\n'));
  n.say(`(${model.groups.length - shown.length} more groups: 'vfiokit --mock ${FIXTURE} ls' lists them all)`);
}

/** A step that is expected to fail shows QEMU's or vfiokit's own message. */
function failureOf(err: unknown): string {
  return reportOf(err).message;
}

/**
 * Start a real QEMU (stopped with -S, TCG, two spare pcie-root-ports, QMP on
 * a socket in a private folder) and show hot-plug against it: the vfio-pci
 * device of the simulated host, which this machine does not have, gets QEMU's
 * real refusal; a virtio device goes in and is verified with query-pci; its
 * unplug is never acknowledged because no guest runs, and ends in the timeout.
 */
async function qemuStep(n: Narrator, plan: Plan, signal: AbortSignal): Promise<void> {
  const qb = await loadQemuBridge();
  const { attachGroup, attachSlots, buildCommandLine, createRunDir, detachDevices, launchQemu, queryVersion } = qb;
  // QEMU is tied to this process and the folder has a reaper (qemu-bridge's
  // process module): both go even if vfiokit is killed with SIGKILL.
  const dir = createRunDir('vfiokit-demo-qemu-');
  const socket = join(dir.path, 'qmp.sock');
  let qemu: RunningQemu | undefined;
  // Leaving without unwinding (a second Ctrl-C, an uncaught error): kill QEMU
  // and remove the folder on the way out.
  const forget = onInterrupt(() => {
    qemu?.kill();
    dir.remove();
  });
  // Interrupted while QEMU runs: end it now, so the QMP call in flight fails
  // and the step unwinds through its finally.
  const stopQemu = () => qemu?.kill();
  signal.addEventListener('abort', stopQemu, { once: true });
  try {
    const cmdline = buildCommandLine({
      name: 'vfiokit-demo',
      machine: 'q35',
      memoryMiB: 128,
      cpus: 1,
      guestIommu: 'none',
      devices: [],
      accel: 'tcg',
      qmp: { path: socket },
      spareRootPorts: 2,
      extraArgs: ['-S', '-display', 'none', '-pidfile', join(dir.path, 'qemu.pid')],
    });
    n.say(`$ ${cmdline.argv.join(' ')}`);
    qemu = await launchQemu(cmdline.argv, { path: socket }, { startTimeoutMs: 20_000, commandTimeoutMs: 10_000, runDir: dir, signal });
    signal.throwIfAborted();
    const version = await queryVersion(qemu.qmp);
    n.say(`QEMU ${version.major}.${version.minor}.${version.micro} is up (pid ${qemu.pid}), stopped before boot; QMP negotiated on ${socket}`);
    await checkpoint('demo-qemu-up', signal);
    const usb = plan.groups.flatMap((g) => g.functions.map((f) => ({ host: f.address, group: g.id })));
    n.say('');
    n.say(`$ vfiokit attach --qmp ${socket} ${usb.map((d) => d.host).join(' ')}`);
    try {
      const placed = await attachGroup(qemu.qmp, usb);
      n.say(placementText(qb, placed, usb));
    } catch (err) {
      signal.throwIfAborted();
      n.say(`QEMU refused, as it must on a machine without that device:\n  ${failureOf(err)}`);
    }
    n.say('');
    n.say('hot-plug a virtio-rng-pci into a free root port instead, through the same path:');
    const placed = await attachSlots(qemu.qmp, [[{ id: 'demo-rng', driver: 'virtio-rng-pci', properties: {}, guestFunction: 0 }]]);
    await checkpoint('demo-qemu-plugged', signal);
    n.say(placed.map((p) => `demo-rng -> ${p.rootPort} function ${p.function}, verified in QOM${p.guestVisible ? ' and query-pci' : ' (query-pci shows it once firmware numbers the bus)'}`).join('\n'));
    n.say('');
    n.say(`$ vfiokit detach --qmp ${socket} --timeout 1 demo-rng`);
    try {
      await detachDevices(qemu.qmp, ['demo-rng'], { timeoutMs: 1_000 });
      n.say('released');
    } catch (err) {
      signal.throwIfAborted();
      n.say(`as expected without a running guest:\n  ${failureOf(err)}`);
    }
  } catch (err) {
    // A QMP call cut short by the interruption says why the run stopped, not that the socket closed.
    signal.throwIfAborted();
    throw err;
  } finally {
    signal.removeEventListener('abort', stopQemu);
    await qemu?.stop(2_000);
    forget();
    dir.remove();
    if (qemu && !signal.aborted) n.say(`QEMU stopped; ${dir.path} removed`);
  }
}

export async function runDemo(ctx: CommandContext, opts: { qemu: boolean }): Promise<ExitCode> {
  const withQemu = opts.qemu && qemuInstalled();
  const n = new Narrator(ctx, 7);
  // Between steps: an interrupted demo stops there and unwinds (unbind, folders).
  const step = () => ctx.signal.throwIfAborted();
  const host: HostSession = await ctx.host();
  ctx.out.line(`vfiokit demo on ${host.description}.`);
  ctx.out.line("Nothing here touches this machine's devices: the host is a sysfs tree in a temporary folder, written through the fixture hosts' model of the kernel (@vfiokit/fixture-hosts).");

  step();
  discoverStep(n, discoverHost(host.fs));
  step();

  n.header('check: can the GPU and the USB controller be assigned?', `vfiokit check ${GPU} ${USB}`);
  const model = discoverHost(host.fs);
  n.say(checkText([checkDevice(host.fs, model, GPU, host.stateDir), checkDevice(host.fs, model, USB, host.stateDir)]));
  n.say(`The GPU drives the console, so the demo leaves it alone and takes the USB controller.`);

  n.header("bind: move the USB controller's group to vfio-pci", `vfiokit bind ${USB}`);
  const store = fileBindingStore(host.stateDir);
  step();
  const bound = bindGroup(host.fs, USB, { store });
  n.say(bindText(bound));
  try {
    await checkpoint('demo-bound', ctx.signal);
    const specPath = relative(process.cwd(), DEMO_SPEC);
    n.header('plan: a 4 GiB q35 guest with that controller', `vfiokit plan ${specPath} --memlock 8G`);
    const { readGuestSpec } = await import('../guest-spec');
    const { qemuCommandLineOf } = await import('../qemu-args');
    const plan = planOnHost(host.fs, readGuestSpec(DEMO_SPEC), { memlock: '8G' });
    const own = readLockedMemoryLimit(host.fs).soft;
    n.say(`(the simulated host's own RLIMIT_MEMLOCK is ${own === undefined ? 'unlimited' : formatSize(own)}; --memlock states the VMM's, as LimitMEMLOCK= in its systemd unit would)`);
    n.say('');
    n.say(planText(plan, plan.ok ? qemuCommandLineOf(plan).readable : undefined));

    step();
    n.header("map: the guest's RAM at IOVA = GPA into a container holding group 11", `vfiokit map ${specPath}`);
    const bound11 = discoverHost(host.fs);
    const groups = plan.groups.map((g) => g.id);
    n.say(mapText(await identityMapRun(ctx, host, bound11, groups, plan.guest.memory)));

    step();
    if (withQemu) {
      n.header('attach: hot-plug into a real QEMU');
      await qemuStep(n, plan, ctx.signal);
    } else {
      n.header('attach: skipped');
      n.say(opts.qemu ? `${QEMU} is not installed here (Debian: apt-get install qemu-system-x86); the rest of the demo ran without it.` : 'skipped (--no-qemu)');
    }
  } finally {
    n.header('clean up: give the controller back to its driver', `vfiokit unbind ${USB}`);
    n.say(unbindText(unbindGroup(host.fs, USB, { store })));
  }
  ctx.out.line('');
  ctx.out.line(`demo finished in ${n.elapsed()}; the simulated host is removed on exit.`);
  ctx.out.result({ ok: true, qemu: withQemu, seconds: n.seconds() }, () => '');
  return ExitCode.Ok;
}

export function demoCommand(state: RunState): Command {
  const cmd = new Command('demo')
    .description('run a short end-to-end session on the built-in simulated host: discover, check, bind, plan, map, and hot-plug into QEMU when installed')
    .option('--no-qemu', 'skip the QEMU step even when qemu-system-x86_64 is installed')
    .action(
      action(state, async (ctx, opts: { qemu: boolean }) => {
        if (ctx.globals.sysfsRoot !== undefined || (ctx.globals.mock !== undefined && ctx.globals.mock !== FIXTURE)) {
          ctx.out.note(`demo always runs on the simulated host '${FIXTURE}'; --sysfs-root and --mock are ignored`);
        }
        const demoCtx = ctx.withGlobals({ ...ctx.globals, sysfsRoot: undefined, mock: FIXTURE, mockDir: undefined });
        try {
          return await runDemo(demoCtx, opts);
        } finally {
          await demoCtx.dispose();
        }
      }),
    );
  return withRealHostExamples(withExamples(cmd, 'vfiokit demo', 'vfiokit demo --no-qemu'), 'pnpm demo');
}
