// Host reserved regions vfiokit can name, with the fix for a guest whose
// identity-mapped RAM would cover one. Each is what the lab measured on
// Debian's 6.1 (packages/testkit/src/lab: x86, x86-amd, arm64) and what the
// IOMMU driver's get_resv_regions adds; the kernel refuses a map into any of
// them with EINVAL (vfio_iommu_iova_dma_valid), which QEMU reports only as
// "VFIO_MAP_DMA failed: Invalid argument".
import { hex } from './layout';
import type { ReservedRegion } from './target';

export interface KnownWindow {
  /** What the region is, for a person: `AMD-Vi's HyperTransport hole`. */
  readonly name: string;
  /** What to change in the guest so that its RAM stays out of it. */
  readonly fix: string;
}

interface WindowRule extends KnownWindow {
  readonly start: bigint;
  readonly end: bigint;
  readonly type: string;
}

const GiB = 1n << 30n;
/** amd_iommu_get_resv_regions: HT_RANGE_START..HT_RANGE_END (drivers/iommu/amd/amd_iommu_types.h). */
const HT_START = 0xfd00000000n;
const HT_END = 0xffffffffffn;

const WINDOWS: readonly WindowRule[] = [
  {
    start: HT_START,
    end: HT_END,
    type: 'reserved',
    name: "AMD-Vi's HyperTransport hole (1012 GiB to 1 TiB)",
    fix:
      `give the guest less RAM (a q35 guest's RAM above 4 GiB must end below ${hex(HT_START)}: at most ${(HT_START - 4n * GiB) / GiB + 2n} GiB in all), ` +
      'or use the guest layout that places RAM above 4 GiB at 1 TiB (QEMU 7.1+ does so by itself for an AMD vCPU whose RAM would reach the hole); ' +
      'a guest IOMMU does not help: all RAM is mapped before the guest turns it on',
  },
  {
    start: 0xfee00000n,
    end: 0xfeefffffn,
    type: 'msi',
    name: 'the x86 MSI window',
    fix: 'keep guest RAM out of 0xfee00000-0xfeefffff (q35 and pc never put RAM there; a custom layout must not either)',
  },
  {
    start: 0x8000000n,
    end: 0x80fffffn,
    type: 'msi',
    name: "the SMMU's MSI doorbell window (MSI_IOVA_BASE, 1 MiB at 128 MiB)",
    fix: 'use a guest machine whose RAM starts above 0x80fffff (arm virt places RAM at 1 GiB); a q35 guest, whose RAM starts at 0, cannot have its RAM mapped at IOVA = GPA here',
  },
];

/** The named window `region` is, when vfiokit knows it. */
export function knownWindow(region: ReservedRegion): KnownWindow | undefined {
  const end = region.start + region.size - 1n;
  return WINDOWS.find((w) => w.type === region.type && w.start === region.start && w.end === end);
}
