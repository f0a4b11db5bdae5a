// `vfiokit trace replay FILE`: drive the shadow policy from a recording of a
// guest's IOMMU operations (vfiokit's trace format, or the Linux kernel's
// iommu tracepoints as /sys/kernel/tracing/trace prints them) against
// vfio-core's mock, one container per assigned group, and report what it cost
// against what the guest did.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Command, Option } from 'commander';
import {
  annotateUnits,
  openMockDmaTarget,
  reserveGuestRam,
  q35Layout,
  qemuMemoryFromHeader,
  readTrace,
  replayTrace,
  VTD_HOST,
  vtdIommu,
  X86_MSI_WINDOW,
  type DmaTrace,
  type GuestIommuCaps,
} from '@vfiokit/core';
import { action, RunState, withExamples } from '../program';
import { CliError, invalidInput, notFound } from '../errors';
import { ExitCode } from '../exit-codes';
import { formatSize, parseSize } from '../sizes';

export interface ReplayOptions {
  readonly device?: string;
  readonly memory?: string;
  readonly group?: string[];
  /** False with --no-merge: keep every guest map a host mapping of its own, as a live translator must. */
  readonly merge?: boolean;
}

export interface ReplayReport {
  readonly file: string;
  readonly ops: number;
  /** Guest maps and unmaps: the operations a naive translator turns into ioctls one by one. */
  readonly guestMapsUnmaps: number;
  readonly groups: readonly number[];
  readonly ram: bigint;
  readonly calls: number;
  readonly ioctls: number;
  readonly peakEntries: number;
  /** Live entries per group's container at the end. */
  readonly finalEntries: Readonly<Record<number, number>>;
  readonly seconds: number;
}

/**
 * A trace as text: `-` is standard input (`trace-cmd report | vfiokit trace
 * replay -`); `.gz` is gunzipped with zlib; `.xz` (how big recordings are kept)
 * goes through xz-utils' own `xz -dc`, which scripts/install.sh installs.
 */
export function readText(file: string): string {
  let data: Buffer;
  try {
    data = file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`trace ${file} does not exist`, 'give the path of a vfiokit trace or of a saved /sys/kernel/tracing/trace');
    throw invalidInput(`cannot read trace ${file}: ${(err as Error).message}`, 'check the path and its permissions');
  }
  if (file.endsWith('.gz')) {
    try {
      return gunzipSync(data).toString('utf8');
    } catch (err) {
      throw invalidInput(`trace ${file} is not gzip data: ${(err as Error).message}`, 'give the file its real extension');
    }
  }
  if (file.endsWith('.xz')) {
    const xz = spawnSync('xz', ['-dc'], { input: data, maxBuffer: 1 << 30 });
    if (xz.error) {
      throw new CliError('TRACE_NO_XZ', `cannot decompress ${file}: ${(xz.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'xz is not installed' : xz.error.message}`, ExitCode.Unavailable, 'apt-get install xz-utils, or decompress it first with unxz');
    }
    if (xz.status !== 0) throw invalidInput(`trace ${file} is not xz data: ${xz.stderr.toString().trim()}`, 'give the file its real extension');
    return xz.stdout.toString('utf8');
  }
  return data.toString('utf8');
}

/**
 * The groups to assign: as named; else the group of --device (the device the
 * recording's DMA belongs to); else every group the trace's devices are in;
 * else the groups its operations attach.
 */
function groupsOf(trace: DmaTrace, named: readonly string[] | undefined, device: string | undefined): number[] {
  if (named && named.length > 0) {
    return named.map((g) => {
      if (!/^\d+$/.test(g)) throw invalidInput(`--group ${g}: not a group number`, 'give the guest IOMMU group numbers the trace uses');
      return Number(g);
    });
  }
  const ofDevice = device === undefined ? undefined : trace.devices.get(device);
  if (ofDevice !== undefined) return [ofDevice];
  const fromDevices = [...new Set(trace.devices.values())];
  if (fromDevices.length > 0) return fromDevices.sort((a, b) => a - b);
  const attached = [...new Set(trace.ops.flatMap((o) => (o.op === 'attach' ? [o.group] : [])))];
  if (attached.length > 0) return attached.sort((a, b) => a - b);
  throw invalidInput('the trace names no device or group to assign', 'name the assigned groups with --group N');
}

export function replayFile(file: string, opts: ReplayOptions, onProgress?: (done: number, total: number) => void): ReplayReport {
  const text = readText(file);
  const trace = readTrace(text, opts.device === undefined ? {} : { device: opts.device });
  const ramBytes = opts.memory !== undefined ? parseSize(opts.memory, '--memory') : qemuMemoryFromHeader(text);
  const ram = trace.memory ?? (ramBytes !== undefined ? q35Layout(ramBytes) : undefined);
  if (ram === undefined) {
    throw new CliError('TRACE_NO_RAM', `${file} does not say how much RAM the guest had`, ExitCode.InvalidInput, 'give it with --memory SIZE (the guest\'s -m)');
  }
  // Maps pin, on the mock too: the guest's RAM is a sparse reservation.
  const { layout, memory } = reserveGuestRam(ram);
  // The guest starts with its IOMMU as the trace says, or as a VT-d guest boots: present, not yet enabled.
  const iommu: GuestIommuCaps & { enabled: boolean } =
    trace.iommu && trace.iommu.kind !== 'none' && trace.iommu.kind !== 'spapr-tce' ? trace.iommu : vtdIommu({ enabled: false });
  const ids = groupsOf(trace, opts.group, opts.device);
  // One container per assigned group, as the shadow policy requires (each follows its own guest domain).
  const groups = ids.map((id) => {
    const group = { id, reservedRegions: [X86_MSI_WINDOW] };
    return { group, target: openMockDmaTarget(VTD_HOST, [group]) };
  });
  const total = trace.ops.length;
  const step = Math.max(1, Math.floor(total / 200));
  // A replay sees the future: maps that one later unmap removes whole may
  // share a host mapping (dma's annotateUnits), which a live guest cannot tell.
  const replayed = opts.merge === false ? trace : { ...trace, ops: annotateUnits(trace.ops) };
  let result: ReturnType<typeof replayTrace>;
  try {
    result = replayTrace({
      trace: replayed,
      layout,
      iommu,
      host: VTD_HOST,
      groups,
      ...(onProgress ? { afterOp: (i: number) => (i % step === 0 || i === total - 1 ? onProgress(i + 1, total) : undefined) } : {}),
    });
  } finally {
    // Released at once rather than at collection: the replay is done with it.
    memory.free();
  }
  const finalEntries: Record<number, number> = {};
  for (const id of ids) finalEntries[id] = result.translator.container(id).size;
  return {
    file,
    ops: result.ops,
    guestMapsUnmaps: trace.ops.filter((o) => o.op === 'map' || o.op === 'unmap').length,
    groups: ids,
    ram: layout.regions.reduce((s, r) => s + r.size, 0n),
    calls: result.calls,
    ioctls: result.ioctls,
    peakEntries: result.peakEntries,
    finalEntries,
    seconds: result.seconds,
  };
}

export function replayText(r: ReplayReport): string {
  const perOp = r.guestMapsUnmaps > 0 ? (r.ioctls / r.guestMapsUnmaps).toFixed(3) : 'n/a';
  return [
    `replayed ${r.file}: ${r.ops} guest IOMMU operations (${r.guestMapsUnmaps} maps and unmaps), ${formatSize(r.ram)} guest RAM`,
    `  assigned group${r.groups.length > 1 ? 's' : ''} ${r.groups.join(', ')}, ${r.groups.length > 1 ? 'one type1v2 container per group' : 'in a type1v2 container'} on vfio-core's mock`,
    `  ${r.calls} batched calls, ${r.ioctls} map/unmap ioctls (${perOp} per guest map or unmap), peak ${r.peakEntries} entries in one container`,
    `  ${r.ioctls <= r.ops ? 'never more host calls than guest operations' : 'MORE host calls than guest operations'}`,
    `  took ${(r.seconds * 1000).toFixed(1)} ms (${r.seconds > 0 ? Math.round(r.ops / r.seconds) : r.ops} guest ops/s)`,
    `  containers at the end: ${Object.entries(r.finalEntries).map(([g, n]) => `group ${g}: ${n} entr${n === 1 ? 'y' : 'ies'}`).join(', ')}`,
  ].join('\n');
}

export function traceCommand(state: RunState): Command {
  const replay = new Command('replay')
    .description("replay a guest IOMMU trace through the shadow policy on vfio-core's mock; prints calls issued, ioctls and time")
    .argument('<file>', "a vfiokit trace (packages/core/src/dma/TRACE-FORMAT.md) or the Linux iommu tracepoints' text; .gz and .xz are decompressed; - reads standard input")
    .option('--device <bdf>', 'for a Linux recording: the guest device whose DMA the maps belong to')
    .option('--memory <size>', "guest RAM when the trace does not say (the guest's -m)")
    .addOption(new Option('--group <n...>', "guest IOMMU groups to assign (default: the trace's devices' groups)"))
    .option('--no-merge', 'do not let maps that one later unmap removes share a host mapping (what a live translator sees)')
    .action(
      action(state, async (ctx, file: string, opts: ReplayOptions) => {
        let bar: ReturnType<typeof ctx.out.progress> | undefined;
        const report = replayFile(file, opts, (done, total) => {
          if (total >= 10_000) (bar ??= ctx.out.progress('replaying', total)).update(done);
        });
        bar?.stop();
        ctx.out.result(report, () => replayText(report));
      }),
    );
  withExamples(
    replay,
    'vfiokit trace replay --device 0000:00:02.0 packages/core/src/dma/fixtures/e1000e-strict-6.1-phase1.txt',
    'vfiokit --json trace replay --device 0000:00:02.0 - < packages/core/src/dma/fixtures/e1000e-strict-6.1-phase1.txt',
  );
  const cmd = new Command('trace').description('work with recordings of guest IOMMU operations').addCommand(replay);
  return withExamples(cmd, 'vfiokit trace replay --device 0000:00:02.0 packages/core/src/dma/fixtures/e1000e-strict-6.1-phase1.txt');
}
