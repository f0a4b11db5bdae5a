// `pnpm lab bench`: vfiokit on the real kernel against the kernel's own
// limit, measured side by side in one x86 guest run (VT-d, Debian 6.1, TCG).
// In one boot the guest runs a small static C program issuing the minimal
// VFIO ioctls (vfio-bench.c) and then vfiokit's JavaScript path
// (guest-bench.ts) on the same group, with the same entries and sizes; this
// side turns the two JSON objects into ratios, prints them and writes them to
// lab-results/bench/bench.json.
//
// Not part of `pnpm lab` (nor of CI): it pins up to most of the guest's RAM
// and issues tens of thousands of ioctls under TCG, minutes on a loaded
// 2-core machine, and its figures are evidence to read, not pass/fail.
// Times under TCG are inflated by emulation; the ratios are the point.

import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../debian';
import { LabError } from '../errors';
import { buildInitramfs, GUEST_OUT_DIR, GUEST_RUN_SCRIPT, MARK, shQuote } from '../initramfs';
import { resolveModules } from '../modules';
import { CaseReport, LabContext, LabProfile } from '../profile';
import { GuestRun, runGuest } from '../qemu';
import { X86_HOSTS } from '../x86/hosts';
import { diedBeforeInit, GUEST_MODULES, qemuArgs, setupReport, staticBusybox, x86Kernel } from '../x86/index';
import { X86_TOPOLOGY } from '../x86/topology';

const QEMU = 'qemu-system-x86_64';
const C_BIN = 'vfio-bench';
const KERNEL_JSON = 'bench-kernel.json';
const VFIOKIT_JSON = 'bench-vfiokit.json';
const RESULT_JSON = 'bench.json';
/** The device whose group every figure is measured on: edu alone on pcie.0. */
const DEVICE = X86_TOPOLOGY.devices.find((d) => d.role === 'solo')!.bdf;

/** What both sides run: scattered entries, guest RAM, the pinning ladder's top, rounds. */
export const BENCH_PARAMS = {
  // Sized for TCG on a loaded 2-core host: one 4 KiB MAP_DMA costs ~250 us
  // there and pinning 1 GiB of untouched memory ~3 minutes (measured), so
  // these keep a whole run to a few minutes.
  entries: 4096,
  ramMib: 32,
  /** Timed rounds in each program run (after its own warm-up round). */
  rounds: 1,
  /**
   * C run, vfiokit run, C run, ...: the guest's clock runs with the host's,
   * so a host whose load drifts during the run (a shared machine) would
   * favour whichever side ran in the quieter minutes; each figure's ratio is
   * taken pair by pair and the median reported.
   */
  pairs: 3,
  /**
   * The pinning ladder's top, MiB, unless VFIOKIT_LAB_BENCH_PIN_MIB asks
   * for more; the guest caps it at the largest power of two within half of
   * its MemAvailable (1024 MiB in the 3 GiB guest), whatever is asked.
   */
  pinMib: 256,
  /** dma_entry_limit for this guest: the per-4-KiB-leaf map of the RAM needs one entry per page. */
  dmaEntryLimit: 1 << 20,
};

export interface PinPoint {
  readonly bytes: number;
  readonly ns: number;
}

/** What vfio-bench.c prints. */
export interface KernelSide {
  readonly entries: number;
  readonly ram_bytes: number;
  readonly a_map_scattered_ns: number;
  readonly b_per_section_ns: number;
  readonly b_per_leaf_ns: number;
  readonly d_unmap_per_range_ns: number;
  readonly d_unmap_all_ns: number;
  readonly c_pin: readonly PinPoint[];
}

/** What guest-bench.ts prints. */
export interface VfiokitSide {
  readonly entries: number;
  readonly ram_bytes: number;
  readonly leaves: number;
  readonly b_ioctls: number;
  readonly a_map_scattered_ns: number;
  readonly b_coalesced_ns: number;
  readonly d_unmap_batch_ns: number;
  readonly d_unmap_all_ns: number;
  readonly c_pin: readonly PinPoint[];
}

export interface Figure {
  readonly id: string;
  readonly what: string;
  /** The kernel's (C) figure and vfiokit's, in the unit named. */
  readonly kernel: number;
  readonly vfiokit: number;
  readonly unit: string;
  /** vfiokit / kernel. */
  readonly ratio: number;
  readonly goal?: string;
  readonly ok?: boolean;
}

const GiB = 2 ** 30;

/** The figures (a) to (d), each with the kernel's beside vfiokit's. */
export function benchFigures(k: KernelSide, v: VfiokitSide): Figure[] {
  if (k.entries !== v.entries || k.ram_bytes !== v.ram_bytes) {
    throw new LabError('BAD_RESULTS', `the two sides measured different work: C ${k.entries} entries / ${k.ram_bytes} B of RAM, vfiokit ${v.entries} / ${v.ram_bytes}`);
  }
  const us = (ns: number) => ns / 1000;
  const fig = (f: Omit<Figure, 'ratio'>): Figure => ({ ...f, ratio: f.vfiokit / f.kernel });
  const ramMib = k.ram_bytes / 2 ** 20;
  const out: Figure[] = [];
  const a = fig({
    id: 'a',
    what: `map ${k.entries} scattered 4 KiB pages (one ioctl each): C ioctl loop vs vfiokit mapBatch from JS`,
    kernel: us(k.a_map_scattered_ns),
    vfiokit: us(v.a_map_scattered_ns),
    unit: 'us',
    goal: '<= 1.2x',
  });
  out.push({ ...a, ok: a.ratio <= 1.2 });
  out.push(
    fig({
      id: 'b-leaf',
      what: `${ramMib} MiB of guest RAM: QEMU under a vIOMMU (one MAP_DMA per 4 KiB leaf, ${v.leaves} ioctls, C) vs vfiokit (the same ${v.leaves} leaves in one mapBatch, ${v.b_ioctls} ioctls)`,
      kernel: us(k.b_per_leaf_ns),
      vfiokit: us(v.b_coalesced_ns),
      unit: 'us',
    }),
    fig({
      id: 'b-section',
      what: `${ramMib} MiB of guest RAM: QEMU without a vIOMMU (one MAP_DMA per memory section, C) vs vfiokit (${v.leaves} leaves coalesced to ${v.b_ioctls} ioctls)`,
      kernel: us(k.b_per_section_ns),
      vfiokit: us(v.b_coalesced_ns),
      unit: 'us',
    }),
  );
  for (const p of k.c_pin) {
    const vp = v.c_pin.find((x) => x.bytes === p.bytes);
    if (vp === undefined) continue;
    out.push(
      fig({
        id: `c-${p.bytes / 2 ** 20}M`,
        what: `pin ${p.bytes / 2 ** 20} MiB of untouched memory with one MAP_DMA: cost per GiB, C vs vfiokit mapBatch`,
        kernel: p.ns / 1e6 / (p.bytes / GiB),
        vfiokit: vp.ns / 1e6 / (p.bytes / GiB),
        unit: 'ms/GiB',
      }),
    );
  }
  out.push(
    fig({
      id: 'd-per-range',
      what: `unmap ${k.entries} scattered mappings one range each: C ioctl loop vs vfiokit unmapBatch`,
      kernel: us(k.d_unmap_per_range_ns),
      vfiokit: us(v.d_unmap_batch_ns),
      unit: 'us',
    }),
    fig({
      id: 'd-all',
      what: `unmap the same ${k.entries} mappings with one VFIO_DMA_UNMAP_FLAG_ALL: C vs vfiokit unmapAll`,
      kernel: us(k.d_unmap_all_ns),
      vfiokit: us(v.d_unmap_all_ns),
      unit: 'us',
    }),
  );
  return out;
}

/** Kernel-only comparisons the figures imply: what one design costs against the other, both measured in C. */
export function kernelRatios(k: KernelSide): { what: string; ratio: number }[] {
  return [
    { what: `(b) per 4 KiB leaf / per section, both C (${k.ram_bytes / 2 ** 20} MiB)`, ratio: k.b_per_leaf_ns / k.b_per_section_ns },
    { what: `(d) per-range unmap / one VFIO_DMA_UNMAP_FLAG_ALL, both C (${k.entries} mappings)`, ratio: k.d_unmap_per_range_ns / k.d_unmap_all_ns },
  ];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * One figure per id from several C/vfiokit pairs: the median of each side
 * and the median of the pair-by-pair ratios (not the ratio of the medians:
 * a pair saw one load, two medians may not have).
 */
export function combinePairs(pairs: readonly Figure[][]): Figure[] {
  if (pairs.length === 0) throw new LabError('BAD_RESULTS', 'no C/vfiokit pair was measured');
  return pairs[0]!.map((first) => {
    const same = pairs.map((p) => p.find((f) => f.id === first.id)).filter((f): f is Figure => f !== undefined);
    const ratio = median(same.map((f) => f.ratio));
    const out: Figure = { ...first, kernel: median(same.map((f) => f.kernel)), vfiokit: median(same.map((f) => f.vfiokit)), ratio };
    return first.goal === undefined ? out : { ...out, ok: first.id === 'a' ? ratio <= 1.2 : first.ok };
  });
}

/** kernelRatios over several runs: each ratio's median. */
export function medianKernelRatios(ks: readonly KernelSide[]): { what: string; ratio: number }[] {
  const all = ks.map(kernelRatios);
  return all[0]!.map((r, i) => ({ what: r.what, ratio: median(all.map((x) => x[i]!.ratio)) }));
}

export function formatFigures(figs: readonly Figure[], kRatios: readonly { what: string; ratio: number }[]): string[] {
  const num = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  const lines = [`${'figure'.padEnd(12)} ${'kernel (C)'.padStart(12)} ${'vfiokit'.padStart(12)} ${'unit'.padEnd(7)} ${'vfiokit/C'.padStart(9)}  goal (medians; the ratio pair by pair)`];
  for (const f of figs) {
    const goal = f.goal === undefined ? '' : `${f.goal} ${f.ok ? 'ok' : 'MISS'}`;
    lines.push(`${f.id.padEnd(12)} ${num(f.kernel).padStart(12)} ${num(f.vfiokit).padStart(12)} ${f.unit.padEnd(7)} ${`${f.ratio.toFixed(2)}x`.padStart(9)}  ${goal}`);
  }
  for (const r of kRatios) lines.push(`${r.what}: ${r.ratio.toFixed(1)}x (median)`);
  return lines;
}

/** Compiles vfio-bench.c static with the host's compiler into the output folder the guest sees. */
function buildC(ctx: LabContext): void {
  requireTool('cc', 'gcc');
  const src = join(ctx.repoRoot, 'packages', 'testkit', 'src', 'lab', 'bench', 'vfio-bench.c');
  const out = join(ctx.outDir, C_BIN);
  ctx.log(`bench: cc -O2 -static ${src}`);
  const res = spawnSync('cc', ['-O2', '-static', '-Wall', '-Werror', '-o', `${out}.new`, src], { encoding: 'utf8' });
  if (res.status !== 0) {
    throw new LabError('BAD_RESULTS', `'cc -static' of ${src} failed (static glibc is in libc6-dev):\n${(res.stderr ?? '').trim().split('\n').slice(-20).join('\n')}`);
  }
  renameSync(`${out}.new`, out);
}

/** The pinning ladder's top the run asks for (VFIOKIT_LAB_BENCH_PIN_MIB, else BENCH_PARAMS.pinMib). */
function pinMib(): number {
  const asked = process.env.VFIOKIT_LAB_BENCH_PIN_MIB;
  if (asked === undefined || asked === '') return BENCH_PARAMS.pinMib;
  const n = Number(asked);
  if (!Number.isSafeInteger(n) || n < 64) {
    throw new LabError('BAD_RESULTS', `VFIOKIT_LAB_BENCH_PIN_MIB must be a whole number of MiB, at least 64, not '${asked}'`);
  }
  return n;
}

function runScript(ctx: LabContext): string {
  const q = shQuote;
  const p = BENCH_PARAMS;
  const args = `"$group" ${p.entries} ${p.ramMib} "$pin_max" ${p.rounds}`;
  return [
    '# Generated by packages/testkit/src/lab/bench/index.ts; run by the guest init inside the host root.',
    'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp VFIOKIT_LAB=1',
    `cd ${q(ctx.repoRoot)} || exit 1`,
    `group=$(basename "$(readlink /sys/bus/pci/devices/${DEVICE}/iommu_group)")`,
    // The pinning ladder goes up to the size asked for, or to the largest
    // power of two MiB within half of what the guest has free (node and
    // the page tables need the rest), whichever is smaller.
    `avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)`,
    `pin_max=64; while [ $((pin_max * 4)) -le "$avail" ] && [ $((pin_max * 2)) -le ${pinMib()} ]; do pin_max=$((pin_max * 2)); done`,
    `echo "${MARK} bench group=$group memavailable=\${avail}MiB pin_max=\${pin_max}MiB"`,
    `: > ${GUEST_OUT_DIR}/${KERNEL_JSON}; : > ${GUEST_OUT_DIR}/${VFIOKIT_JSON}`,
    `for pair in $(seq 1 ${p.pairs}); do`,
    `  echo "${MARK} stage=bench-c pair=$pair"`,
    `  ${GUEST_OUT_DIR}/${C_BIN} ${args} >> ${GUEST_OUT_DIR}/${KERNEL_JSON}`,
    `  echo "${MARK} bench-c-exit=$?"`,
    `  echo "${MARK} stage=bench-vfiokit pair=$pair"`,
    `  ${q(ctx.nodePath)} packages/testkit/dist/lab/bench/guest-bench.js ${args} >> ${GUEST_OUT_DIR}/${VFIOKIT_JSON}`,
    `  echo "${MARK} bench-vfiokit-exit=$?"`,
    'done',
    '',
  ].join('\n');
}

/** One JSON object per line, one line per run of that side. */
function readSide<T>(ctx: LabContext, file: string, consolePath: string): T[] {
  try {
    const runs = readFileSync(join(ctx.outDir, file), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as T);
    if (runs.length !== BENCH_PARAMS.pairs) throw new Error(`${runs.length} runs, not ${BENCH_PARAMS.pairs}`);
    return runs;
  } catch (err) {
    throw new LabError('BAD_RESULTS', `the guest wrote no readable ${file} (${(err as Error).message}); see ${consolePath}`);
  }
}

async function runBench(ctx: LabContext): Promise<CaseReport[]> {
  requireTool(QEMU, 'qemu-system-x86');
  const host = X86_HOSTS[0]!;
  const kernel = x86Kernel(ctx);
  const modules = resolveModules(kernel.moduleDir, GUEST_MODULES);
  const initramfs = join(ctx.outDir, 'initramfs.cpio');
  writeFileSync(
    initramfs,
    buildInitramfs({
      busybox: staticBusybox(ctx),
      modules,
      moduleParams: { vfio_iommu_type1: `dma_entry_limit=${BENCH_PARAMS.dmaEntryLimit}` },
      bindToVfio: X86_TOPOLOGY.devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.bdf),
      repoRoot: ctx.repoRoot,
    }),
  );
  writeFileSync(join(ctx.outDir, GUEST_RUN_SCRIPT), runScript(ctx));
  buildC(ctx);

  const consolePath = join(ctx.outDir, 'console.log');
  const boot = (): Promise<GuestRun> =>
    runGuest({
      qemu: QEMU,
      args: qemuArgs(ctx, host, kernel, initramfs),
      consolePath,
      timeoutMs: ctx.guestTimeoutMs,
      onLine: (line) => {
        if (line.startsWith(MARK)) ctx.log(`bench guest ${line.slice(MARK.length).trim()}`);
      },
    });
  let run = await boot();
  if (diedBeforeInit(run)) {
    renameSync(consolePath, join(ctx.outDir, 'console-boot1.log'));
    ctx.log('bench guest died before init; booting once more');
    run = await boot();
  }
  if (run.timedOut) {
    throw new LabError('GUEST_TIMEOUT', `the bench guest did not power off within ${ctx.guestTimeoutMs / 1000} s and was killed; its console is in ${consolePath}`);
  }
  ctx.log(`bench guest powered off after ${(run.elapsedMs / 1000).toFixed(1)} s`);
  const reports: CaseReport[] = [setupReport(run.console, consolePath)];
  const ks = readSide<KernelSide>(ctx, KERNEL_JSON, consolePath);
  const vs = readSide<VfiokitSide>(ctx, VFIOKIT_JSON, consolePath);
  const perPair = ks.map((k, i) => benchFigures(k, vs[i]!));
  const figures = combinePairs(perPair);
  writeFileSync(
    join(ctx.outDir, RESULT_JSON),
    `${JSON.stringify({ params: { ...BENCH_PARAMS, pinMib: pinMib() }, kernel: ks, vfiokit: vs, perPair, figures, kernelRatios: medianKernelRatios(ks) }, null, 2)}\n`,
  );
  ctx.log(
    `bench: ${kernel.release}, QEMU TCG with VT-d, group of ${DEVICE}; ${BENCH_PARAMS.pairs} C/vfiokit pairs in turn, each run timing ${BENCH_PARAMS.rounds} round(s) after a warm-up (pinning: one map per size per run)`,
  );
  for (const line of formatFigures(figures, medianKernelRatios(ks))) ctx.log(`bench ${line}`);
  ctx.log(`bench: every figure is in ${join(ctx.outDir, RESULT_JSON)}`);
  // A figure is measured or the run failed; whether it meets its goal is
  // printed (ok / MISS), not a test verdict: timings are not tests here.
  reports.push(...figures.map((f) => ({ name: `bench (${f.id}) measured on the kernel and through vfiokit: ${f.ratio.toFixed(2)}x${f.goal ? ` (goal ${f.goal}: ${f.ok ? 'ok' : 'MISS'})` : ''}`, ok: true })));
  return reports;
}

export const benchProfile: LabProfile = {
  name: 'bench',
  description: 'x86 VT-d guest: vfiokit against a C program issuing the same ioctls, QEMU-style maps, pinning per GiB, unmap-all (figures, not tests)',
  run: runBench,
};
