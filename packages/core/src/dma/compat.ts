// Will the guest's IOMMU and memory work on this host, and for which groups?
// Every rule here is one that otherwise fails at run time, often late and
// vaguely: QEMU learns of RAM above the host's IOVA ranges only as
// "VFIO_MAP_DMA failed: -22", of the entry limit as ENOSPC, of the memlock
// limit as ENOMEM.
import { iovaCollisions } from './collisions';
import { knownWindow } from './reserved-windows';
import { ramSize, type GuestModel } from './guest';
import { hex } from './layout';
import { planContainers, type MemlockLimit } from './topology';
import type { DmaGroup, HostIommuInfo } from './target';

export type CompatCode =
  | 'PAGE_SIZE'
  | 'ADDRESS_WIDTH'
  | 'BAR_UNREACHABLE'
  | 'BAR_OUTSIDE_HOST'
  | 'RAM_OUTSIDE_HOST'
  | 'ENTRY_LIMIT'
  | 'MEMLOCK'
  | 'CACHING_MODE'
  | 'WINDOW_SIZE'
  | 'TCE_PAGE_SIZE'
  | 'IOVA_HOLE';

export interface CompatFinding {
  readonly code: CompatCode;
  /** An error stops the assignment; a warning says what will not work. */
  readonly severity: 'error' | 'warning';
  /** The group it concerns; absent when it concerns every group. */
  readonly group?: number;
  readonly message: string;
  /** What to change, when one change fixes it. */
  readonly fix?: string;
}

export interface CompatReport {
  readonly ok: boolean;
  readonly assignments: readonly { readonly group: number; readonly works: boolean; readonly reasons: readonly string[] }[];
  readonly findings: readonly CompatFinding[];
}

/** What the sPAPR host offers a PE (`VFIO_IOMMU_SPAPR_TCE_GET_INFO` and the host's page size). */
export interface SpaprHostCaps {
  readonly ddwPageSizes: bigint;
  readonly maxWindowSize: bigint;
  readonly dma32Size: bigint;
  /** log2 of the page size backing guest RAM on the host (12 for 4 KiB, 16 for 64 KiB, 24 for 16 MiB hugepages). */
  readonly ramPageShift: number;
}

export interface CompatOptions {
  readonly memlock?: MemlockLimit;
  readonly spapr?: SpaprHostCaps;
}

function lowest(n: bigint): bigint {
  return n & -n;
}

function sizeText(n: bigint): string {
  const units: [bigint, string][] = [[1n << 40n, 'TiB'], [1n << 30n, 'GiB'], [1n << 20n, 'MiB'], [1n << 10n, 'KiB']];
  for (const [u, s] of units) if (n >= u && n % u === 0n) return `${n / u} ${s}`;
  return `${n} bytes`;
}

export function checkCompatibility(guest: GuestModel, host: HostIommuInfo, groups: readonly DmaGroup[], opts: CompatOptions = {}): CompatReport {
  const f: CompatFinding[] = [];
  const iommu = guest.iommu;
  const hostEnd = host.iovaRanges.reduce((m, r) => (r.start + r.size > m ? r.start + r.size : m), 0n);

  // Every x86 guest starts with all RAM mapped: with no IOMMU for good, with
  // VT-d or virtio-iommu until it turns translation on (firmware runs before).
  if (iommu.kind !== 'spapr-tce') {
    for (const g of groups) {
      for (const c of iovaCollisions(
        guest.memory.regions.map((r) => ({ name: `RAM region ${r.name}`, start: r.gpa, size: r.size })),
        host,
        [g],
      )) {
        const known = c.region === undefined ? undefined : knownWindow(c.region);
        f.push({
          code: 'RAM_OUTSIDE_HOST',
          severity: 'error',
          group: g.id,
          message: `${c.message}: the identity map fails (QEMU: "VFIO_MAP_DMA failed: -22"); move guest RAM below ${hex(hostEnd)} or out of the reserved window`,
          ...(known === undefined ? {} : { fix: known.fix }),
        });
      }
      for (const c of iovaCollisions((guest.memory.bars ?? []).map((b) => ({ name: `BAR ${b.name}`, start: b.gpa, size: b.size })), host, [g]))
        f.push({ code: 'BAR_OUTSIDE_HOST', severity: 'warning', group: g.id, message: `${c.message}: peer-to-peer DMA to it will not work` });
    }
    // One container holds one entry per RAM region (none, or IOMMU off: per container too).
    const entries = guest.memory.regions.length;
    if (entries > host.dmaEntryLimit)
      f.push({
        code: 'ENTRY_LIMIT',
        severity: 'error',
        message: `mapping all RAM needs ${entries} mappings, over dma_entry_limit ${host.dmaEntryLimit} (the kernel answers ENOSPC, not ENOMEM); merge RAM regions or raise vfio_iommu_type1.dma_entry_limit`,
      });
  }

  if (iommu.kind === 'vtd' || iommu.kind === 'virtio-iommu') {
    const guestMin = lowest(iommu.pageSizes);
    const hostMin = lowest(host.pageSizes);
    if (guestMin < hostMin)
      f.push({
        code: 'PAGE_SIZE',
        severity: 'error',
        message: `the guest IOMMU maps ${sizeText(guestMin)} pages but the host IOMMU's smallest page is ${sizeText(hostMin)} (page sizes ${hex(host.pageSizes)}); the guest's mappings cannot be mirrored`,
      });
    const guestEnd = 1n << BigInt(iommu.addressWidth);
    if (guestEnd > hostEnd)
      f.push({
        code: 'ADDRESS_WIDTH',
        severity: 'error',
        message: `the guest IOMMU is ${iommu.addressWidth}-bit and may hand out IOVAs up to ${hex(guestEnd - 1n)}, past the host's IOVA ranges ending at ${hex(hostEnd - 1n)}; give it ${bitsOf(hostEnd)} bits (intel-iommu aw-bits=${bitsOf(hostEnd)})`,
      });
    for (const b of guest.memory.bars ?? [])
      if (b.gpa + b.size > guestEnd)
        f.push({
          code: 'BAR_UNREACHABLE',
          severity: 'error',
          message: `BAR ${b.name} at ${hex(b.gpa)}-${hex(b.gpa + b.size - 1n)} lies above the ${iommu.addressWidth}-bit guest IOMMU's reach (${hex(guestEnd - 1n)}); devices cannot DMA to it through the guest IOMMU: place it below 2^${iommu.addressWidth} or raise aw-bits`,
        });
    for (const g of groups)
      for (const rr of g.reservedRegions)
        if (rr.type !== 'direct-relaxable' && rr.start < guestEnd)
          f.push({
            code: 'IOVA_HOLE',
            severity: 'warning',
            group: g.id,
            message: `group ${g.id}'s ${rr.type} region ${hex(rr.start)}-${hex(rr.start + rr.size - 1n)} lies in the guest's IOVA space; a guest that maps IOVAs there is refused (Linux guests reserve the x86 MSI window themselves)`,
          });
    if (iommu.kind === 'vtd' && !iommu.cachingMode)
      f.push({
        code: 'CACHING_MODE',
        severity: 'error',
        message: 'intel-iommu without caching-mode=on never tells the host about new mappings; QEMU refuses vfio-pci behind it: set caching-mode=on',
      });
  }

  if (iommu.kind === 'spapr-tce' && opts.spapr) {
    const s = opts.spapr;
    for (const shift of iommu.pageShifts) {
      if ((s.ddwPageSizes & (1n << BigInt(shift))) === 0n)
        f.push({ code: 'TCE_PAGE_SIZE', severity: 'warning', message: `the guest may ask for ${sizeText(1n << BigInt(shift))} TCEs but the host PE offers page sizes ${hex(s.ddwPageSizes)}` });
      else if (shift > s.ramPageShift)
        f.push({
          code: 'TCE_PAGE_SIZE',
          severity: 'warning',
          message: `${sizeText(1n << BigInt(shift))} TCEs need guest RAM backed by pages at least that large, but the host backs it with ${sizeText(1n << BigInt(s.ramPageShift))} pages: maps into such a window fail; back RAM with hugepages or use smaller TCEs`,
        });
    }
    if (iommu.defaultWindow.size > s.dma32Size)
      f.push({ code: 'WINDOW_SIZE', severity: 'error', message: `the guest's default window (${sizeText(iommu.defaultWindow.size)}) is larger than the host PE's 32-bit window (${sizeText(s.dma32Size)})` });
    if (iommu.ddw && ramSize(guest.memory) > s.maxWindowSize)
      f.push({
        code: 'WINDOW_SIZE',
        severity: 'warning',
        message: `guest RAM (${sizeText(ramSize(guest.memory))}) exceeds the largest 64-bit window the host offers (${sizeText(s.maxWindowSize)}): the guest cannot map all RAM directly and falls back to dynamic TCEs`,
      });
  }

  const topo = planContainers(guest, groups, opts.memlock);
  if (!topo.fitsMemlock && opts.memlock && opts.memlock.soft !== 'unlimited')
    f.push({
      code: 'MEMLOCK',
      severity: 'error',
      message: `${topo.containers.length} container(s) may pin ${sizeText(topo.pinnedBytes)} (${sizeText(topo.requiredMemlock)} with headroom), over RLIMIT_MEMLOCK ${sizeText(opts.memlock.soft)} (the kernel answers ENOMEM, not ENOSPC); raise the limit (ulimit -l, or LimitMEMLOCK= in the unit) to at least ${topo.requiredMemlock} bytes`,
    });

  const assignments = groups.map((g) => {
    const reasons = f.filter((x) => x.severity === 'error' && (x.group === undefined || x.group === g.id)).map((x) => x.message);
    return { group: g.id, works: reasons.length === 0, reasons };
  });
  return { ok: assignments.every((a) => a.works) && !f.some((x) => x.severity === 'error'), assignments, findings: f };
}

function bitsOf(end: bigint): number {
  let b = 0;
  while (1n << BigInt(b + 1) <= end) b++;
  return b;
}
