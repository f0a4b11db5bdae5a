// `vfiokit attach` / `detach --qmp SOCKET`: hot-plug whole IOMMU groups into a
// running QEMU as vfio-pci devices (one free pcie-root-port per host slot, a
// slot's functions together), and unplug them, waiting for the guest to let
// go. Both go through qemu-bridge's hot-plug; every wait has a timeout.
import { Command, Option } from 'commander';
import type { PlacedDevice, QmpSession, VfioDeviceSpec } from '@vfiokit/qemu-bridge';
import { assertGroupsAssignable, assertPlanOk, discoverHost, planAssignment, resolveGroup, type HostFs, type HostModel } from '@vfiokit/core';
import { action, RunState, withRealHostExamples } from '../program';
import { invalidInput } from '../errors';
import type { CommandContext } from '../context';
import { checkpoint } from '../checkpoint';

export interface QmpOptions {
  readonly qmp: string;
  readonly timeout: string;
}

/** Seconds from the command line, as milliseconds. */
export function timeoutMs(text: string): number {
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) throw invalidInput(`--timeout ${text}: not a number of seconds`, 'give a positive number, e.g. --timeout 5');
  return Math.round(s * 1000);
}

export type QemuBridge = typeof import('@vfiokit/qemu-bridge');

/** qemu-bridge, loaded only by the commands that talk to QEMU. */
export function loadQemuBridge(): Promise<QemuBridge> {
  return import('@vfiokit/qemu-bridge');
}

/** Connect to QEMU's monitor; every wait (connect, greeting, each command) is bounded by the timeout. */
export async function openQmp(opts: QmpOptions): Promise<QmpSession> {
  const ms = timeoutMs(opts.timeout);
  const { connectQmp } = await loadQemuBridge();
  return connectQmp({ path: opts.qmp }, { connectTimeoutMs: ms, greetingTimeoutMs: ms, commandTimeoutMs: ms });
}

/** A target that is a guest spec stands for the groups its plan assigns. */
async function expandTargets(model: HostModel, targets: readonly string[]): Promise<string[]> {
  if (!targets.some((t) => /\.ya?ml$/.test(t))) return [...targets];
  const { readGuestSpec } = await import('../guest-spec');
  return targets.flatMap((t) => (/\.ya?ml$/.test(t) ? assertPlanOk(planAssignment(model, readGuestSpec(t))).groups.map((g) => String(g.id)) : [t]));
}

/** The vfio-pci devices for whole groups: every endpoint of each group the targets name. */
export async function groupDevices(host: HostFs, model: HostModel, targets: readonly string[]): Promise<VfioDeviceSpec[]> {
  const devices: VfioDeviceSpec[] = [];
  const seen = new Set<number>();
  for (const t of await expandTargets(model, targets)) {
    const group = resolveGroup(model, t);
    if (seen.has(group.id)) continue;
    seen.add(group.id);
    // Core's one rule; QEMU opens each function through vfio-pci, so every one must be there.
    assertGroupsAssignable(host, model, [group.id], { everyFunction: true });
    for (const d of group.devices) if (!d.isBridge) devices.push({ host: d.address, group: group.id });
  }
  return devices;
}

export function placementText(qb: QemuBridge, placed: readonly PlacedDevice[], devices: readonly VfioDeviceSpec[]): string {
  const { defaultDeviceId, parseBdf } = qb;
  return placed
    .map((p) => {
      const host = devices.find((d) => defaultDeviceId(parseBdf(d.host)!) === p.id)?.host ?? '?';
      return `${host} -> ${p.id} on ${p.rootPort} function ${p.function}${p.guestVisible ? '' : ' (guest has not numbered the bus yet: VM not started)'}`;
    })
    .join('\n');
}

async function withQmp<T>(opts: QmpOptions, run: (qmp: QmpSession) => Promise<T>): Promise<T> {
  const qmp = await openQmp(opts);
  try {
    return await run(qmp);
  } finally {
    await qmp.close();
  }
}

const qmpOption = () => new Option('--qmp <socket>', "QEMU's QMP UNIX socket (-qmp unix:PATH,server=on,wait=off)").makeOptionMandatory(true);
const timeoutOption = (what: string) => new Option('--timeout <seconds>', what).default('10');

export function attachCommand(state: RunState): Command {
  const cmd = new Command('attach')
    .description('hot-plug the whole IOMMU group of each target into a running QEMU, as vfio-pci devices on free pcie-root-ports')
    .argument('<targets...>', 'PCI addresses, IOMMU group numbers, or a guest spec (its planned groups); the groups must be on vfio-pci')
    .addOption(qmpOption())
    .addOption(timeoutOption('give up on QEMU after this many seconds (connect, greeting, each command)'))
    .option('--root-port <id...>', 'use these root ports, in order, instead of the first free ones')
    .action(
      action(state, async (ctx: CommandContext, targets: string[], opts: QmpOptions & { rootPort?: string[] }) => {
        const { fs } = await ctx.host();
        const model = discoverHost(fs);
        const devices = await groupDevices(fs, model, targets);
        const qb = await loadQemuBridge();
        const placed = await withQmp(opts, async (qmp) => {
          await checkpoint('attach-connected', ctx.signal);
          return qb.attachGroup(qmp, devices, opts.rootPort ? { rootPorts: opts.rootPort } : {});
        });
        ctx.out.result({ attached: placed }, () => placementText(qb, placed, devices));
      }),
    );
  return withRealHostExamples(
    cmd,
    'vfiokit attach --qmp /run/vm1/qmp.sock 0000:04:00.0',
    'vfiokit attach --qmp vm.sock --root-port rp2 11',
    'vfiokit attach --qmp vm.sock packages/cli/examples/usb-controller.yaml',
  );
}

export function detachCommand(state: RunState): Command {
  const cmd = new Command('detach')
    .description('unplug devices from a running QEMU and wait until the guest releases them (device_del, then DEVICE_DELETED)')
    .argument('<devices...>', 'QEMU device ids, or host PCI addresses attached with their default ids (hostdev-DDDD-BB-DD-F)')
    .addOption(qmpOption())
    .addOption(timeoutOption('how long the guest has to release the devices, and the limit on every other wait'))
    .action(
      action(state, async (ctx, targets: string[], opts: QmpOptions) => {
        const qb = await loadQemuBridge();
        const ids = targets.map((t) => {
          const bdf = qb.parseBdf(t);
          return bdf ? qb.defaultDeviceId(bdf) : t;
        });
        await withQmp(opts, (qmp) => qb.detachDevices(qmp, ids, { timeoutMs: timeoutMs(opts.timeout) }));
        ctx.out.result({ detached: ids }, () => ids.map((id) => `${id}: released by the guest and removed`).join('\n'));
      }),
    );
  return withRealHostExamples(cmd, 'vfiokit detach --qmp /run/vm1/qmp.sock 0000:04:00.0', 'vfiokit detach --qmp vm.sock --timeout 30 hostdev-0000-04-00-0');
}
