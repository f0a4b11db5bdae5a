// `vfiokit map`: identity-map a guest's RAM layout into a type1v2 container
// (IOVA = guest physical address), as a VMM does for a guest without an
// IOMMU, and report what it cost: batched calls, ioctls, entries, time. The
// layout comes from a guest spec, or from --memory / --fragments (a
// fragmented layout shows batching at work). Everything is unmapped again at
// the end: map demonstrates and measures, it does not hand a container over.
import { Command, Option } from 'commander';
import {
  checkIdentityRegions,
  ContainerMappings,
  discoverHost,
  fragmentedLayout,
  assertPlanOk,
  planAssignment,
  identityEntry,
  reserveGuestRam,
  q35Layout,
  HostMemory,
  GroupNotViableError,
  openHostContainer,
  vfioHostOf,
  type HostFs,
  type HostModel,
  type GuestMemoryLayout,
  type RamRegion,
  type HostIommuInfo,
} from '@vfiokit/core';
import { action, RunState, withExamples, withRealHostExamples } from '../program';
import { CliError, invalidInput } from '../errors';
import { ExitCode } from '../exit-codes';
import { formatSize, hex, parseSize } from '../sizes';
import type { CommandContext, GlobalOptions, HostSession } from '../context';
import type { Output } from '../output';
import { yieldToEvents } from '../cleanup';
import { checkpoint } from '../checkpoint';

/** Regions per batched call: large enough that any real layout is one call, small enough that a huge one shows progress. */
const CHUNK = 4096;

export interface MapOptions {
  readonly memory: string;
  readonly fragments?: string;
  readonly group?: string[];
}

export interface MapReport {
  readonly backend: 'kernel' | 'mock';
  readonly groups: readonly number[];
  readonly host: HostIommuInfo;
  readonly regions: number;
  readonly bytes: bigint;
  /** Batched calls into vfio-core (napi crossings). */
  readonly calls: number;
  /** VFIO_IOMMU_MAP_DMA ioctls those calls issued, after coalescing. */
  readonly ioctls: number;
  readonly entries: number;
  readonly planMs: number;
  readonly mapMs: number;
  readonly unmapCalls: number;
  readonly unmapIoctls: number;
  readonly unmapMs: number;
}

function ms(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

/** Largest piece of real memory per allocation (vfio-core's HostMemory takes a 32-bit size). */
const PIECE = 1n << 30n;

/**
 * Guest RAM backed by memory of this process, for the kernel backend: the
 * kernel pins what it maps (vfio_pin_pages_remote), so the addresses must be
 * real. Regions over 1 GiB become several pieces, each its own mapping.
 */
function backWithHostMemory(layout: GuestMemoryLayout): { layout: GuestMemoryLayout; memories: HostMemory[] } {
  const memories: HostMemory[] = [];
  const regions: RamRegion[] = [];
  try {
    for (const r of layout.regions) {
      const pieces = (r.size + PIECE - 1n) / PIECE;
      for (let i = 0n; i < pieces; i++) {
        const size = r.size - i * PIECE < PIECE ? r.size - i * PIECE : PIECE;
        const memory = new HostMemory(Number(size));
        memories.push(memory);
        regions.push({ ...r, name: pieces === 1n ? r.name : `${r.name}.${i}`, gpa: r.gpa + i * PIECE, size, hva: memory.address });
      }
    }
  } catch (err) {
    for (const m of memories) m.free();
    throw err;
  }
  return { layout: { ...layout, regions }, memories };
}

function reservedFor(layout: GuestMemoryLayout): { layout: GuestMemoryLayout; memories: HostMemory[] } {
  const r = reserveGuestRam(layout);
  return { layout: r.layout, memories: [r.memory] };
}

/**
 * Map `layout` at IOVA = GPA into one container holding `groups` of the host
 * (core's openHostContainer decides they may join one and opens it), then
 * unmap it; returns the counts. The batches are issued with a turn of the
 * event loop between them, so an interruption (`ctx.signal`) is seen there:
 * what was mapped so far is unmapped, and the run ends with the signal's reason.
 */
export async function identityMapRun(ctx: { out: Output; signal?: AbortSignal }, session: { backend: 'kernel' | 'mock'; fs: HostFs }, model: HostModel, groups: readonly number[], layout: GuestMemoryLayout): Promise<MapReport> {
  const backend = session.backend;
  const opened = openHostContainer(vfioHostOf(model, backend), session.fs, model, groups);
  // More regions than the container may hold is refused before any work
  // (vfio_dma_do_map answers ENOSPC past dma_entry_limit).
  if (layout.regions.length > opened.info.dmaEntryLimit) {
    opened.close();
    throw new CliError(
      'DMA_ENTRY_LIMIT',
      `${layout.regions.length} RAM regions need ${layout.regions.length} mappings, over the container's dma_entry_limit of ${opened.info.dmaEntryLimit} (the kernel would answer ENOSPC)`,
      ExitCode.Refused,
      `use at most ${opened.info.dmaEntryLimit} regions, or raise vfio_iommu_type1's dma_entry_limit module parameter`,
    );
  }
  // Both pin what they map: the kernel gets committed memory in pieces; the
  // mock one sparse reservation, so any guest size can be simulated.
  const backed = backend === 'kernel' ? backWithHostMemory(layout) : reservedFor(layout);
  try {
    const t0 = process.hrtime.bigint();
    const placed = backed.layout;
    // Every collision is found before anything is mapped (dma's identity rule).
    checkIdentityRegions(placed.regions, opened.info, opened.groups);
    // Boot RAM is one unit: mapped, and later unmapped, whole.
    const entries = placed.regions.map((r) => identityEntry(r, 0));
    const planMs = ms(t0);
    const mappings = new ContainerMappings(`container of group${groups.length > 1 ? 's' : ''} ${groups.join(', ')}`, opened.target, opened.info.dmaEntryLimit);
    const t1 = process.hrtime.bigint();
    const bar = entries.length > CHUNK ? ctx.out.progress('mapping', entries.length) : undefined;
    let done = 0;
    try {
      for (; done < entries.length; done += CHUNK) {
        if (done > 0) await yieldToEvents();
        ctx.signal?.throwIfAborted();
        mappings.map(entries.slice(done, done + CHUNK));
        if (done === 0 && ctx.signal) await checkpoint('map-batch', ctx.signal);
        bar?.update(Math.min(done + CHUNK, entries.length));
      }
    } catch (err) {
      // Nothing half-done: a batch that failed rolled itself back; the ones
      // before it are unmapped here, before the container is closed.
      bar?.stop();
      const mappedBefore = mappings.size;
      if (mappedBefore > 0) mappings.unmap([...mappings.entries()].map((e) => ({ iova: e.iova, size: e.size })));
      if (ctx.signal?.aborted && err === ctx.signal.reason) {
        ctx.out.note(`map stopped after ${mappedBefore} of ${entries.length} regions; unmapped them again, ${mappings.size} left in the container`);
      }
      throw err;
    }
    bar?.stop();
    const mapMs = ms(t1);
    const mapped = { calls: mappings.stats.calls, ioctls: mappings.stats.ioctls, entries: mappings.size };
    const t2 = process.hrtime.bigint();
    mappings.unmap(entries.map((e) => ({ iova: e.iova, size: e.size })));
    return {
      backend,
      groups,
      host: opened.info,
      regions: placed.regions.length,
      bytes: placed.regions.reduce((s, r) => s + r.size, 0n),
      calls: mapped.calls,
      ioctls: mapped.ioctls,
      entries: mapped.entries,
      planMs,
      mapMs,
      unmapCalls: mappings.stats.calls - mapped.calls,
      unmapIoctls: mappings.stats.ioctls - mapped.ioctls,
      unmapMs: ms(t2),
    };
  } finally {
    opened.close();
    for (const m of backed.memories) m.free();
  }
}

export function mapText(r: MapReport): string {
  const ranges = r.host.iovaRanges.map((x) => `${hex(x.start)}-${hex(x.start + x.size - 1n)}`).join(', ');
  return [
    `container: type1v2 on the ${r.backend === 'mock' ? "vfio-core mock (the simulated host's groups)" : 'kernel'}, group${r.groups.length > 1 ? 's' : ''} ${r.groups.join(', ')}`,
    `  host IOMMU: page sizes ${hex(r.host.pageSizes)}, IOVA ranges ${ranges}, ${r.host.dmaEntryLimit} mappings allowed`,
    `mapped ${r.regions} RAM region${r.regions === 1 ? '' : 's'} (${formatSize(r.bytes)}) at IOVA = GPA`,
    `  ${r.calls} batched call${r.calls === 1 ? '' : 's'}, ${r.ioctls} VFIO_IOMMU_MAP_DMA ioctl${r.ioctls === 1 ? '' : 's'}, ${r.entries} live entr${r.entries === 1 ? 'y' : 'ies'}`,
    `  planned in ${r.planMs.toFixed(2)} ms, issued in ${r.mapMs.toFixed(2)} ms`,
    `unmapped again: ${r.unmapCalls} batched call${r.unmapCalls === 1 ? '' : 's'}, ${r.unmapIoctls} VFIO_IOMMU_UNMAP_DMA ioctl${r.unmapIoctls === 1 ? '' : 's'}, ${r.unmapMs.toFixed(2)} ms`,
  ].join('\n');
}

async function layoutAndGroups(ctx: CommandContext, file: string | undefined, opts: MapOptions): Promise<{ layout: GuestMemoryLayout; groups: number[] }> {
  const model = discoverHost((await ctx.host()).fs);
  const named = (opts.group ?? []).map((g) => {
    if (!/^\d+$/.test(g)) throw invalidInput(`--group ${g}: not an IOMMU group number`, "list the groups with 'vfiokit ls'");
    return Number(g);
  });
  if (file !== undefined) {
    const { readGuestSpec } = await import('../guest-spec');
    const spec = readGuestSpec(file);
    if (spec.machine !== 'q35') throw new CliError('MAP_NOT_TYPE1', `map does identity maps into type1 containers; ${file} is a ${spec.machine} guest`, ExitCode.InvalidInput, 'use a q35 guest spec');
    // The planner resolves the spec's devices to whole groups and gives the guest's RAM layout.
    const plan = assertPlanOk(planAssignment(model, spec));
    return { layout: plan.guest.memory, groups: named.length > 0 ? named : plan.groups.map((g) => g.id) };
  }
  if (named.length === 0) throw invalidInput('map needs the groups to put in the container', 'name them with --group N (see vfiokit ls), or give a guest spec');
  const total = parseSize(opts.memory, '--memory');
  if (opts.fragments === undefined) return { layout: q35Layout(total), groups: named };
  const fragments = Number(opts.fragments);
  if (!Number.isInteger(fragments) || fragments < 1) throw invalidInput(`--fragments ${opts.fragments}: not a positive whole number`, 'e.g. --fragments 4096');
  return { layout: fragmentedLayout({ total, fragments }), groups: named };
}

/**
 * A group core refused to put in a container, its fix said for this run: a
 * simulated host starts fresh in every run, so there the bind must also keep
 * it with --mock-dir, or a bind in one run and a map in the next never meet.
 */
function withMockDirHint(err: unknown, session: HostSession, globals: GlobalOptions): unknown {
  if (!(err instanceof GroupNotViableError) || session.fixture === undefined || globals.mockDir !== undefined) return err;
  const bind = err.hint ?? `vfiokit bind ${err.group}`;
  return new CliError(
    err.code,
    err.message,
    ExitCode.Refused,
    `each --mock run starts from a fresh host; keep one with --mock-dir and bind there first: ${bind.replace('vfiokit', `vfiokit --mock ${session.fixture} --mock-dir DIR`)}, then run this map with --mock-dir DIR too`,
  );
}

export function mapCommand(state: RunState): Command {
  const cmd = new Command('map')
    .description('identity-map a guest RAM layout into a type1v2 container (the mock with --mock, else the kernel, pinning real memory) and report batched calls, ioctls and time')
    .argument('[guest.yaml]', "a q35 guest spec: its RAM layout and its devices' groups")
    .option('--memory <size>', 'guest RAM when no spec is given (q35 layout around the PCI hole)', '4G')
    .option('--fragments <n>', 'split --memory into N RAM regions with holes between them (starting at 4 GiB)')
    .addOption(new Option('--group <n...>', 'IOMMU groups to put in the container (default: the spec\'s devices\' groups)'))
    .action(
      action(state, async (ctx, file: string | undefined, opts: MapOptions) => {
        const session = await ctx.host();
        const { layout, groups } = await layoutAndGroups(ctx, file, opts);
        const model = discoverHost(session.fs);
        const report = await identityMapRun(ctx, session, model, groups, layout).catch((err: unknown) => {
          throw withMockDirHint(err, session, ctx.globals);
        });
        ctx.out.result(report, () => mapText(report));
      }),
    );
  // A simulated host starts fresh in every run: the examples keep one in ws/ so the bind is still there for map.
  return withRealHostExamples(
    withExamples(
      cmd,
      'vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws map --group 11 --memory 16G',
      'vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws map --group 11 --memory 64G --fragments 4096',
      'vfiokit --mock workstation --mock-dir ws bind 11 && vfiokit --mock workstation --mock-dir ws map packages/cli/examples/usb-controller.yaml',
    ),
    'vfiokit map --group 11 --memory 16G',
  );
}
