// How cost grows with size: entries from 1k to 4M against CPU ns per entry and
// peak memory, for vfio-core's mapBatch (mock), the shadow policy's replay of
// a guest trace, and the Linux trace importer. Each point runs in a child
// process of its own, so its peak memory is its own and no point inherits
// another's heap or JIT state.
//
//   node dist/dma/bench/growth.js [max entries, default VFIOKIT_BENCH_GROWTH_MAX or 4194304]
//
// Peak memory: after the input is built and collected, the child resets its
// resident high-water mark (writing 5 to /proc/self/clear_refs, Linux), runs
// the operation and reads VmHWM; the figure is that peak minus the resident
// size just before, so it is what the operation itself added.
import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { enableAfterBootTrace } from '../generate';
import { vtdIommu } from '../guest';
import { reserveGuestRam } from '../sparse-ram';
import { HostMemory } from '../../vfio/index';
import { replayTrace } from '../replay';
import { VTD_HOST, X86_MSI_WINDOW } from '../target';
import { importLinuxTrace } from '../trace-linux';
import { openMockDmaTarget } from '../vfio-target';

type Kind = 'mapBatch' | 'replay' | 'import' | 'import-live';
const KINDS: readonly Kind[] = ['mapBatch', 'replay', 'import', 'import-live'];
const WHAT: Record<Kind, string> = {
  mapBatch: 'vfio-core mapBatch, scattered 4 KiB entries, mock',
  replay: 'shadow replay of a generated guest trace, per guest op',
  import: 'Linux trace importer, per event line (bursts of 128 maps, then their unmaps)',
  'import-live': 'Linux trace importer, per event line, every map live at once (all maps, then all unmaps)',
};
/** The term that grows faster than the entries, where one is known. */
const TERM: Partial<Record<Kind, string>> = {};
/** What a row's target says, where it is more than 'flat within 2x'. */
const TARGET: Partial<Record<Kind, string>> = {
  // The importer's table of live mappings is a treap (interval-tree.ts):
  // O(log n) per map and unmap however many are live, so top-down IOVAs
  // (each map below every live one) no longer move them all.
  'import-live': '<= 2 (linear, with every mapping live at once)',
};

interface Point {
  readonly kind: Kind;
  /** Entries, guest ops or event lines actually processed. */
  readonly n: number;
  readonly cpuNs: number;
  readonly peakBytes: number;
}

function vm(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** `op` returns how many entries it handled: the point's n. */
function measure(kind: Kind, op: () => number): Point {
  (globalThis as { gc?: () => void }).gc?.();
  writeFileSync('/proc/self/clear_refs', '5');
  const rss = vm('VmRSS');
  const c0 = process.cpuUsage();
  const done = op();
  const c = process.cpuUsage(c0);
  return { kind, n: done, cpuNs: (c.user + c.system) * 1000, peakBytes: Math.max(0, vm('VmHWM') - rss) };
}

/**
 * A Linux iommu trace of `n` event lines: one device, 4 KiB maps at
 * descending IOVAs in bursts of `burst`, each burst followed by its unmaps.
 */
function linuxTrace(n: number, burst: number): string {
  const lines = [
    '# tracer: nop',
    '            init-1       [001] .....     1.000000: add_device_to_group: IOMMU: groupID=2 device=0000:00:02.0',
    '            init-1       [001] .....     1.000001: attach_device_to_domain: IOMMU: device=0000:00:02.0',
  ];
  const maps = Math.floor(n / 2);
  // Short lines (no flags column, unpadded hex; the importer reads both):
  // 4M lines of the recorder's full width would pass V8's longest string.
  const hex = (v: number) => `0x${v.toString(16)}`;
  const at = (i: number) => ` ip-1 [001] ${(2 + i / 1e6).toFixed(6)}`;
  const iovaOf = (i: number) => 0xfffff000 * 16 - i * 0x2000;
  for (let b = 0; b < maps; b += burst) {
    const end = Math.min(maps, b + burst);
    for (let i = b; i < end; i++)
      lines.push(`${at(lines.length)}: map: IOMMU: iova=${hex(iovaOf(i))} - ${hex(iovaOf(i) + 0x1000)} paddr=${hex(0x100000 + (i % 4096) * 0x1000)} size=4096`);
    for (let i = b; i < end; i++)
      lines.push(`${at(lines.length)}: unmap: IOMMU: iova=${hex(iovaOf(i))} - ${hex(iovaOf(i) + 0x1000)} size=4096 unmapped_size=4096`);
  }
  return lines.join('\n') + '\n';
}

function child(kind: Kind, n: number): Point {
  const group = { id: 1, reservedRegions: [X86_MSI_WINDOW] };
  switch (kind) {
    case 'mapBatch': {
      const { VfioBackend } = createRequire(__filename)('@vfiokit/vfio-core') as typeof import('@vfiokit/vfio-core');
      // Maps pin, on the mock as on the kernel: the host addresses lie in a
      // sparse reservation of this process's address space.
      const ram = HostMemory.reserve(BigInt(n * 0x2000));
      const a = new BigUint64Array(3 * n);
      for (let i = 0; i < n; i++) a.set([0x1_0000_0000n + BigInt(i) * 0x2000n, ram.address + BigInt(i) * 0x2000n, 0x1000n], 3 * i);
      const c = VfioBackend.mock({ dmaEntryLimit: n + 16 }).openType1([1]);
      const p = measure(kind, () => c.mapBatch(a, 3).entries);
      c.close();
      ram.free();
      return p;
    }
    case 'replay': {
      const trace = enableAfterBootTrace({ ops: n });
      const { layout, memory } = reserveGuestRam(trace.memory!);
      const host = { ...VTD_HOST, dmaEntryLimit: 1 << 30 };
      const p = measure(kind, () => {
        const r = replayTrace({ trace, layout, iommu: vtdIommu({ enabled: false }), host, groups: [{ group, target: openMockDmaTarget(host, [group]) }] });
        return r.ops;
      });
      memory.free();
      return p;
    }
    case 'import':
    case 'import-live': {
      const text = linuxTrace(n, kind === 'import' ? 128 : n);
      return measure(kind, () => {
        importLinuxTrace(text, { device: '0000:00:02.0' });
        return n;
      });
    }
  }
}

function sizes(max: number): number[] {
  const out: number[] = [];
  for (let n = 1024; n <= max; n *= 4) out.push(n);
  return out;
}

function parent(max: number): void {
  console.log(`growth: CPU ns per entry and peak memory the operation added, 1k..${(max / 1024).toFixed(0)}k entries, one child process per point`);
  const rowsFile = process.env.VFIOKIT_BENCH_ROWS;
  for (const kind of KINDS) {
    console.log(`\n  ${WHAT[kind]}`);
    console.log(`  ${'entries'.padStart(10)} ${'ns/entry'.padStart(10)} ${'peak MiB'.padStart(10)} ${'bytes/entry'.padStart(12)}`);
    const points: Point[] = [];
    for (const n of sizes(max)) {
      let p: Point;
      try {
        const out = execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=8192', __filename, 'child', kind, String(n)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        p = JSON.parse(out) as Point;
      } catch (e) {
        const why = ((e as { stderr?: string }).stderr ?? '').split('\n').find((l) => /Error/.test(l)) ?? (e as Error).message.split('\n')[0];
        console.log(`  ${String(n).padStart(10)} failed: ${why}`);
        if (rowsFile) appendFileSync(rowsFile, JSON.stringify({ bench: 'core growth', name: `${kind}: the ${n}-entry point`, value: 'failed', target: 'runs', ok: false }) + '\n');
        continue;
      }
      points.push(p);
      console.log(
        `  ${String(p.n).padStart(10)} ${(p.cpuNs / p.n).toFixed(1).padStart(10)} ${(p.peakBytes / 2 ** 20).toFixed(1).padStart(10)} ${(p.peakBytes / p.n).toFixed(1).padStart(12)}`,
      );
    }
    // Linear growth keeps ns per entry flat: compare the largest point with
    // the one at 16k (small points are dominated by fixed costs and JIT).
    const base = points.find((p) => p.n >= 16384);
    const top = points[points.length - 1];
    if (base === undefined || top === undefined || top === base) continue;
    const growth = top.cpuNs / top.n / (base.cpuNs / base.n);
    const ok = growth <= 2;
    console.log(
      `  ns/entry from ${base.n} to ${top.n} entries: x${growth.toFixed(2)} ${ok ? '(linear: flat within 2x)' : `(NOT linear: ${TERM[kind] ?? 'a term grows faster than the entries'})`}`,
    );
    if (rowsFile)
      appendFileSync(
        rowsFile,
        JSON.stringify({ bench: 'core growth', name: `${kind}: ns/entry at ${top.n} / at ${base.n}`, value: `x${growth.toFixed(2)}`, target: TARGET[kind] ?? '<= 2 (linear)', ok }) + '\n',
      );
  }
}

if (process.argv[2] === 'child') {
  process.stdout.write(JSON.stringify(child(process.argv[3] as Kind, Number(process.argv[4]))));
} else {
  parent(Number(process.argv[2] ?? process.env.VFIOKIT_BENCH_GROWTH_MAX ?? 4 * 1024 * 1024));
}
