// `vfiokit demo`: the README's main job. A short end-to-end session on the
// built-in simulated host `workstation`: discover, check, bind, plan, map,
// and (when qemu-system-x86_64 is installed) hot-plug into a real QEMU. It
// calls the same functions the commands do, prints each step as the command
// an operator would type, and leaves nothing behind: the simulated host's
// folder, the QEMU process and its socket are removed whatever happens.
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { bindGroup, checkViability, discoverHost, fileBindingStore, unbindGroup, type HostModel } from '@vfiokit/core';
import { action, RunState, withExamples } from '../program';
import { readGuestSpec } from '../guest-spec';
import type { CommandContext, HostSession } from '../context';
import { groupTree } from './ls';
import { checkDevice, checkText } from './check';
import { bindText, unbindText } from './bind';
import { planOnHost, planText } from './plan';
import { ExitCode } from '../exit-codes';

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

  elapsed(): string {
    return `${(Number(process.hrtime.bigint() - this.started) / 1e9).toFixed(1)} s`;
  }
}

function discoverStep(n: Narrator, model: HostModel): void {
  n.header('discover: IOMMU groups and what holds them', `vfiokit --mock ${FIXTURE} ls`);
  const shown = model.groups.filter((g) => g.devices.some((d) => d.address === GPU || d.address === USB));
  for (const g of shown) n.say(groupTree(g, checkViability(model, g)).join('\n'));
  n.say(`(${model.groups.length - shown.length} more groups: 'vfiokit --mock ${FIXTURE} ls' lists them all)`);
}

export async function runDemo(ctx: CommandContext, opts: { qemu: boolean }): Promise<ExitCode> {
  const n = new Narrator(ctx, opts.qemu ? 6 : 5);
  const host: HostSession = await ctx.host();
  ctx.out.line(`vfiokit demo on ${host.description}.`);
  ctx.out.line("Nothing here touches this machine's devices: the host is a sysfs tree in a temporary folder, written through testkit's model of the kernel.");

  discoverStep(n, discoverHost(host.fs));

  n.header('check: can the GPU and the USB controller be assigned?', `vfiokit check ${GPU} ${USB}`);
  const model = discoverHost(host.fs);
  n.say(checkText([checkDevice(host.fs, model, GPU), checkDevice(host.fs, model, USB)]));
  n.say(`The GPU drives the console, so the demo leaves it alone and takes the USB controller.`);

  n.header('bind: move the USB controller\'s group to vfio-pci', `vfiokit bind ${USB}`);
  const store = fileBindingStore(host.stateDir);
  const bound = bindGroup(host.fs, USB, { store });
  n.say(bindText(bound));
  try {
    n.header('plan: a 4 GiB q35 guest with that controller', `vfiokit plan ${relative(process.cwd(), DEMO_SPEC)} --memlock 8G`);
    const plan = planOnHost(host.fs, readGuestSpec(DEMO_SPEC), { memlock: '8G' });
    n.say(planText(plan));
  } finally {
    n.header('clean up: give the controller back to its driver', `vfiokit unbind ${USB}`);
    n.say(unbindText(unbindGroup(host.fs, USB, { store })));
  }
  ctx.out.line('');
  ctx.out.line(`demo finished in ${n.elapsed()}; the simulated host is removed on exit.`);
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
  return withExamples(cmd, 'vfiokit demo', 'pnpm demo');
}
