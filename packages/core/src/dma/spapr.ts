// sPAPR (POWER): a pseries guest always translates DMA through TCE windows.
// Each host PE (IOMMU group) becomes one guest PCI host bridge of its own,
// all of them children of the one pseries machine, each with a container of
// its own: two PEs in one v2 container attach but then every window or map
// fails with EPERM (spapr_tce_set_window; seen on 6.12, lab-facts-spapr.md).
// The guest's TCE hypercalls become container operations on the sPAPR TCE v2
// backend, checked in user space first: a map that runs past a window's end
// oopses 6.12 (tce_iommu_unuse_page_v2), so none is ever issued; memory is
// unmapped before it is unregistered (tce_iommu_unregister_pages returns 0
// while mappings remain and leaks the registration).
import { GuestOpError, HostRefusalError } from './errors';
import { SPAPR_DMA64_START, type GuestMemoryLayout, type TceWindow } from './guest';
import { hex, regionAt, validateLayout } from './layout';
import type { DmaGroup } from './target';

/** QEMU's SPAPR_PCI_LIOBN(phb_index, window_num): the logical I/O bus number of a window. */
export function spaprLiobn(phbIndex: number, window: 0 | 1): number {
  return (0x80000000 | (phbIndex << 8) | window) >>> 0;
}

/** One guest PCI host bridge (`spapr-pci-host-bridge`) holding one host PE. */
export interface SpaprPhb {
  /** The bridge's `index` property; 0 is the machine's own default bridge, so PEs start at 1. */
  readonly index: number;
  /** QEMU id: `phb1`. Devices go on `bus=phb1.0`. */
  readonly id: string;
  /** The host group (PE) behind it; its container is this bridge's alone. */
  readonly group: number;
  /** The LIOBNs of its default 32-bit window and its dynamic 64-bit window. */
  readonly liobn32: number;
  readonly liobn64: number;
}

/** The guest PCI topology of a pseries guest: one bridge per PE under one parent. */
export interface SpaprPciTopology {
  /** The common parent of every bridge: the pseries machine's system bus. */
  readonly parent: 'spapr-machine';
  readonly bridges: readonly SpaprPhb[];
}

/** One bridge per PE, in group order, indexes from 1. */
export function planSpaprBridges(groups: readonly DmaGroup[]): SpaprPciTopology {
  const sorted = [...groups].sort((a, b) => a.id - b.id);
  return {
    parent: 'spapr-machine',
    bridges: sorted.map((g, i) => ({
      index: i + 1,
      id: `phb${i + 1}`,
      group: g.id,
      liobn32: spaprLiobn(i + 1, 0),
      liobn64: spaprLiobn(i + 1, 1),
    })),
  };
}

/** What the sPAPR TCE v2 container of one PE offers (vfio-core's TceContainer). */
export interface SpaprTarget {
  /** `VFIO_IOMMU_SPAPR_TCE_GET_INFO`: the default window and DDW capabilities. */
  info(): { readonly dma32Start: bigint; readonly dma32Size: bigint; readonly ddw?: { readonly pageSizes: bigint; readonly maxWindows: number } };
  createWindow(pageShift: number, size: bigint): { readonly start: bigint };
  removeWindow(start: bigint): void;
  register(vaddr: bigint, size: bigint): void;
  unregister(vaddr: bigint, size: bigint): void;
  map(iova: bigint, vaddr: bigint, size: bigint, perm: number): void;
  unmap(iova: bigint, size: bigint): void;
}

/** TCE permission bits (TCE_PCI_READ, TCE_PCI_WRITE) as the guest writes them into a TCE. */
export const TCE_READ = 1n;
export const TCE_WRITE = 2n;

/** A guest hypercall or RTAS call that changes a PE's DMA translation. */
export type SpaprCall =
  /** H_PUT_TCE: one TCE; permission bits 0 clear it. */
  | { readonly call: 'H_PUT_TCE'; readonly liobn: number; readonly ioba: bigint; readonly tce: bigint }
  /** H_STUFF_TCE: the same TCE value into `npages` consecutive entries (mostly to clear). */
  | { readonly call: 'H_STUFF_TCE'; readonly liobn: number; readonly ioba: bigint; readonly tce: bigint; readonly npages: number }
  /** H_PUT_TCE_INDIRECT: up to 512 TCEs from a list. */
  | { readonly call: 'H_PUT_TCE_INDIRECT'; readonly liobn: number; readonly ioba: bigint; readonly tces: readonly bigint[] }
  /** ibm,create-pe-dma-window: a 64-bit window of 2^windowShift bytes in 2^pageShift TCEs. */
  | { readonly call: 'create-window'; readonly phb: number; readonly pageShift: number; readonly windowShift: number }
  /** ibm,remove-pe-dma-window. */
  | { readonly call: 'remove-window'; readonly liobn: number };

/** Counters for reports and benchmarks. */
export interface SpaprStats {
  calls: number;
  /** Host calls: maps, unmaps, window and registration calls. */
  hostCalls: number;
}

interface LiveWindow extends TceWindow {
  /** IOMMU page index -> TCE value (gpa | perm), only valid entries. */
  readonly tces: Map<number, bigint>;
}

/**
 * The translation of one PE: the guest's windows and TCEs, mirrored into its
 * container. Every TCE change goes out as unmaps of the changed runs, then
 * maps of the new runs (contiguous in bus and host address, same permission,
 * one call each: sPAPR clears TCE by TCE, so merged runs never need splitting
 * later the way type1 mappings do).
 */
export class SpaprPeTranslator {
  private readonly windows = new Map<0 | 1, LiveWindow>();
  /** Valid TCEs per RAM region: memory with references is not unregistered. */
  private readonly regionRefs = new Map<string, number>();
  private layout: GuestMemoryLayout;
  readonly stats: SpaprStats = { calls: 0, hostCalls: 0 };

  constructor(
    readonly phb: SpaprPhb,
    private readonly target: SpaprTarget,
    layout: GuestMemoryLayout,
    private readonly defaultWindow: TceWindow,
    /**
     * log2 of the host pages backing guest RAM. A TCE larger than them cannot
     * be mapped (the kernel pins one host page per TCE and wants it whole):
     * QEMU offers the guest only TCE sizes its RAM backing allows.
     */
    private readonly ramPageShift = 12,
  ) {
    this.layout = validateLayout(layout);
  }

  /**
   * Register all RAM (QEMU's prereg listener does the same) and give the PE the
   * guest's default window in place of the host's.
   */
  start(): void {
    for (const r of this.layout.regions) {
      if (r.hva === undefined) throw new HostRefusalError(`RAM region ${r.name} has no host address to register`);
      this.host(() => this.target.register(r.hva!, r.size));
    }
    const info = this.target.info();
    this.host(() => this.target.removeWindow(info.dma32Start));
    this.createWindow(this.defaultWindow);
  }

  /** Windows as they stand, for checks. */
  window(index: 0 | 1): TceWindow | undefined {
    return this.windows.get(index);
  }

  /** Valid TCEs of a window: bus address -> TCE value. */
  tces(index: 0 | 1): Map<bigint, bigint> {
    const w = this.windows.get(index);
    const out = new Map<bigint, bigint>();
    if (w) for (const [i, v] of w.tces) out.set(w.start + (BigInt(i) << BigInt(w.pageShift)), v);
    return out;
  }

  private host(f: () => void): void {
    f();
    this.stats.hostCalls++;
  }

  private createWindow(w: TceWindow): void {
    if (w.pageShift > this.ramPageShift)
      throw new HostRefusalError(
        `${this.phb.id} cannot back ${1n << BigInt(w.pageShift)}-byte TCEs: guest RAM is backed by ${1n << BigInt(this.ramPageShift)}-byte host pages, ` +
          `and maps into such a window fail; back RAM with hugepages or offer the guest smaller TCEs (QEMU's spapr-pci-host-bridge pgsz)`,
      );
    const made = this.target.createWindow(w.pageShift, w.size);
    this.stats.hostCalls++;
    if (made.start !== w.start) {
      this.host(() => this.target.removeWindow(made.start));
      throw new HostRefusalError(
        `the host placed ${this.phb.id}'s window ${w.index} at ${hex(made.start)} but the guest expects ${hex(w.start)}; ` +
          `QEMU refuses this too ("Host doesn't support DMA window at ...")`,
      );
    }
    this.windows.set(w.index, { ...w, tces: new Map() });
  }

  private windowOf(liobn: number): LiveWindow {
    const index = liobn === this.phb.liobn32 ? 0 : liobn === this.phb.liobn64 ? 1 : undefined;
    const w = index === undefined ? undefined : this.windows.get(index);
    if (!w) throw new GuestOpError(`LIOBN ${hex(BigInt(liobn))} names no window of ${this.phb.id} (H_PARAMETER)`);
    return w;
  }

  /** Apply one guest call. Refused calls (H_PARAMETER in the guest) change nothing. */
  apply(c: SpaprCall): void {
    this.stats.calls++;
    switch (c.call) {
      case 'H_PUT_TCE':
        return this.put(this.windowOf(c.liobn), c.ioba, [c.tce]);
      case 'H_STUFF_TCE':
        return this.put(this.windowOf(c.liobn), c.ioba, new Array<bigint>(c.npages).fill(c.tce));
      case 'H_PUT_TCE_INDIRECT':
        if (c.tces.length > 512) throw new GuestOpError(`H_PUT_TCE_INDIRECT of ${c.tces.length} TCEs: at most 512 (one 4 KiB page of TCEs)`);
        return this.put(this.windowOf(c.liobn), c.ioba, c.tces);
      case 'create-window': {
        if (c.phb !== this.phb.index) throw new GuestOpError(`create-window for bridge ${c.phb} sent to ${this.phb.id}`);
        if (this.windows.has(1)) throw new GuestOpError(`${this.phb.id} already has a 64-bit window; remove it first`);
        return this.createWindow({ index: 1, start: SPAPR_DMA64_START, size: 1n << BigInt(c.windowShift), pageShift: c.pageShift });
      }
      case 'remove-window': {
        const w = this.windowOf(c.liobn);
        // Clear its TCEs first so the region references drop with them.
        this.clearAll(w);
        this.host(() => this.target.removeWindow(w.start));
        this.windows.delete(w.index);
        return;
      }
    }
  }

  /** Write TCEs starting at ioba; refused whole if any falls outside the window or maps what is not RAM. */
  private put(w: LiveWindow, ioba: bigint, tces: readonly bigint[]): void {
    const shift = BigInt(w.pageShift);
    const page = 1n << shift;
    const end = ioba + BigInt(tces.length) * page;
    if (ioba % page !== 0n) throw new GuestOpError(`IOBA ${hex(ioba)} is not aligned to ${this.phb.id}'s ${page}-byte TCEs`);
    if (ioba < w.start || end > w.start + w.size)
      throw new GuestOpError(
        `TCEs ${hex(ioba)}-${hex(end - 1n)} run outside window ${w.index} (${hex(w.start)}-${hex(w.start + w.size - 1n)}) of ${this.phb.id} (H_PARAMETER)`,
      );
    // Check every new TCE before changing anything.
    const next: { idx: number; tce: bigint; hva: bigint; region: string }[] = [];
    const first = Number((ioba - w.start) >> shift);
    tces.forEach((tce, k) => {
      if ((tce & (TCE_READ | TCE_WRITE)) === 0n) return;
      const gpa = tce & ~(page - 1n);
      const r = regionAt(this.layout, gpa);
      if (!r || r.hva === undefined || gpa + page > r.gpa + r.size)
        throw new HostRefusalError(`TCE ${hex(tce)} at IOBA ${hex(ioba + BigInt(k) * page)} points at GPA ${hex(gpa)}, which is not (all) guest RAM`);
      next.push({ idx: first + k, tce, hva: r.hva + (gpa - r.gpa), region: r.name });
    });
    // Unmap every entry that was valid and changes, as contiguous runs.
    const drop: number[] = [];
    for (let k = 0; k < tces.length; k++) {
      const old = w.tces.get(first + k);
      if (old !== undefined && old !== tces[k]) drop.push(first + k);
    }
    for (const [s, n] of runsOf(drop)) {
      this.host(() => this.target.unmap(w.start + (BigInt(s) << shift), BigInt(n) << shift));
      for (let i = s; i < s + n; i++) {
        const old = w.tces.get(i)!;
        const r = regionAt(this.layout, old & ~(page - 1n))!;
        this.regionRefs.set(r.name, this.regionRefs.get(r.name)! - 1);
        w.tces.delete(i);
      }
    }
    // Map the new valid entries, merging neighbours contiguous in host memory.
    const adds = next.filter((e) => !w.tces.has(e.idx));
    let k = 0;
    while (k < adds.length) {
      let j = k + 1;
      const perm = adds[k]!.tce & (TCE_READ | TCE_WRITE);
      while (
        j < adds.length &&
        adds[j]!.idx === adds[j - 1]!.idx + 1 &&
        adds[j]!.hva === adds[j - 1]!.hva + page &&
        (adds[j]!.tce & (TCE_READ | TCE_WRITE)) === perm
      )
        j++;
      const a = adds[k]!;
      this.host(() => this.target.map(w.start + (BigInt(a.idx) << shift), a.hva, BigInt(j - k) << shift, Number(perm)));
      for (let i = k; i < j; i++) {
        w.tces.set(adds[i]!.idx, adds[i]!.tce);
        this.regionRefs.set(adds[i]!.region, (this.regionRefs.get(adds[i]!.region) ?? 0) + 1);
      }
      k = j;
    }
  }

  private clearAll(w: LiveWindow): void {
    const idx = [...w.tces.keys()].sort((a, b) => a - b);
    const shift = BigInt(w.pageShift);
    for (const [s, n] of runsOf(idx)) {
      this.host(() => this.target.unmap(w.start + (BigInt(s) << shift), BigInt(n) << shift));
      for (let i = s; i < s + n; i++) {
        const r = regionAt(this.layout, w.tces.get(i)! & ~((1n << shift) - 1n))!;
        this.regionRefs.set(r.name, this.regionRefs.get(r.name)! - 1);
        w.tces.delete(i);
      }
    }
  }

  /** Valid TCEs pointing into a RAM region. */
  referencesTo(region: string): number {
    return this.regionRefs.get(region) ?? 0;
  }

  /** Unplug a DIMM: refused while TCEs point into it; else unregistered. */
  unplug(name: string): void {
    const r = this.layout.regions.find((x) => x.name === name);
    if (!r) throw new GuestOpError(`no RAM region ${name} on ${this.phb.id}`);
    const refs = this.referencesTo(name);
    if (refs > 0) throw new GuestOpError(`cannot unplug ${name}: ${refs} TCE(s) of ${this.phb.id} still map it; the guest must clear them first`);
    this.host(() => this.target.unregister(r.hva!, r.size));
    this.layout = { ...this.layout, regions: this.layout.regions.filter((x) => x !== r) };
  }

  /** Tear down in the order the kernel needs: unmap, remove windows, then unregister memory. */
  close(): void {
    for (const w of [...this.windows.values()]) {
      this.clearAll(w);
      this.host(() => this.target.removeWindow(w.start));
      this.windows.delete(w.index);
    }
    for (const r of this.layout.regions) this.host(() => this.target.unregister(r.hva!, r.size));
  }
}

/** Sorted indexes -> [start, count] runs. */
function runsOf(idx: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const i of idx) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === i) last[1]++;
    else out.push([i, 1]);
  }
  return out;
}

/**
 * A pseries guest's DMA: one translator per PE (so one container per PE),
 * with every hypercall routed by its LIOBN to the bridge that owns it, as
 * QEMU's spapr_tce_find_by_liobn does.
 */
export class SpaprGuestDma {
  readonly topology: SpaprPciTopology;
  private readonly byLiobn = new Map<number, SpaprPeTranslator>();
  private readonly byIndex = new Map<number, SpaprPeTranslator>();

  constructor(
    groups: readonly { readonly group: DmaGroup; readonly target: SpaprTarget }[],
    layout: GuestMemoryLayout,
    defaultWindow: TceWindow,
    ramPageShift = 12,
  ) {
    this.topology = planSpaprBridges(groups.map((g) => g.group));
    for (const phb of this.topology.bridges) {
      const target = groups.find((g) => g.group.id === phb.group)!.target;
      const tr = new SpaprPeTranslator(phb, target, layout, defaultWindow, ramPageShift);
      this.byLiobn.set(phb.liobn32, tr);
      this.byLiobn.set(phb.liobn64, tr);
      this.byIndex.set(phb.index, tr);
    }
  }

  /** Register RAM and set up each PE's default window. */
  start(): void {
    for (const tr of this.byIndex.values()) tr.start();
  }

  /** The translator of the bridge holding `group`. */
  pe(group: number): SpaprPeTranslator {
    const phb = this.topology.bridges.find((b) => b.group === group);
    if (!phb) throw new GuestOpError(`group ${group} is not one of this guest's PEs`);
    return this.byIndex.get(phb.index)!;
  }

  apply(c: SpaprCall): void {
    const tr = c.call === 'create-window' ? this.byIndex.get(c.phb) : this.byLiobn.get(c.liobn);
    if (!tr)
      throw new GuestOpError(
        c.call === 'create-window' ? `no guest host bridge with index ${c.phb} (H_PARAMETER)` : `LIOBN ${hex(BigInt(c.liobn))} belongs to no guest host bridge (H_PARAMETER)`,
      );
    tr.apply(c);
  }

  /** Tear every PE down: unmap, remove windows, unregister. */
  close(): void {
    for (const tr of this.byIndex.values()) tr.close();
  }
}
