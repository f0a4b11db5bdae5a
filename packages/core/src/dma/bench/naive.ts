// The baseline the benchmark measures against: a translator that makes one
// host call per 4 KiB leaf, as QEMU's VT-d emulation notifies VFIO
// (vtd_page_walk -> memory_region_notify_iommu -> vfio_iommu_map_notify, one
// VFIO_IOMMU_MAP_DMA / UNMAP_DMA per leaf), and maps all RAM one region per
// call. It keeps the container correct; it just does not batch.
import type { GuestMemoryLayout } from '../guest';
import { regionAt } from '../layout';
import type { GuestIommuOp } from '../ops';
import { mapBatchOf, setMap, setUnmap, unmapBatchOf, DMA_RW, type DmaTarget } from '../target';
import { asBytes, asHva, asIova } from '../units';

const P = 4096n;

export class NaiveTranslator {
  calls = 0;
  ioctls = 0;
  entries = 0;
  peakEntries = 0;
  private enabled: boolean;
  /** domain -> IOVA page -> [hva, perm] */
  private readonly tables = new Map<number, Map<bigint, [bigint, number]>>();
  private attached: number | undefined;

  constructor(
    private readonly target: DmaTarget,
    private readonly layout: GuestMemoryLayout,
    private readonly group: number,
    enabled: boolean,
  ) {
    this.enabled = enabled;
  }

  private map1(iova: bigint, hva: bigint, size: bigint, perm: number): void {
    const b = mapBatchOf(1);
    setMap(b, 0, asIova(iova), asHva(hva), asBytes(size), perm);
    this.ioctls += this.target.mapBatch(b);
    this.calls++;
    if (++this.entries > this.peakEntries) this.peakEntries = this.entries;
  }

  private unmap1(iova: bigint, size: bigint): void {
    const b = unmapBatchOf(1);
    setUnmap(b, 0, asIova(iova), asBytes(size));
    this.ioctls += this.target.unmapBatch(b);
    this.calls++;
    this.entries--;
  }

  /** All RAM, one call per region. */
  mapRam(): void {
    for (const r of this.layout.regions) this.map1(r.gpa, r.hva!, r.size, DMA_RW);
  }

  private unmapRam(): void {
    for (const r of this.layout.regions) this.unmap1(r.gpa, r.size);
  }

  private table(d: number): Map<bigint, [bigint, number]> {
    let t = this.tables.get(d);
    if (!t) this.tables.set(d, (t = new Map()));
    return t;
  }

  private live(): boolean {
    return this.enabled && this.attached !== undefined;
  }

  apply(op: GuestIommuOp): void {
    switch (op.op) {
      case 'map': {
        const t = this.table(op.domain);
        for (let o = 0n; o < op.size; o += P) {
          const gpa = op.gpa + o;
          const r = regionAt(this.layout, gpa)!;
          const hva = r.hva! + (gpa - r.gpa);
          t.set(op.iova + o, [hva, op.perm]);
          if (this.live() && this.attached === op.domain) this.map1(op.iova + o, hva, P, op.perm);
        }
        break;
      }
      case 'unmap': {
        const t = this.table(op.domain);
        for (let o = 0n; o < op.size; o += P) {
          if (!t.delete(op.iova + o)) continue;
          if (this.live() && this.attached === op.domain) this.unmap1(op.iova + o, P);
        }
        break;
      }
      case 'attach':
      case 'detach':
        if (op.group !== this.group) break;
        if (this.live()) for (const k of this.table(this.attached!).keys()) this.unmap1(k, P);
        this.attached = op.op === 'attach' ? op.domain : undefined;
        if (this.live()) for (const [k, [hva, perm]] of this.table(this.attached!)) this.map1(k, hva, P, perm);
        break;
      case 'enable':
        if (this.enabled) break;
        this.unmapRam();
        this.enabled = true;
        if (this.live()) for (const [k, [hva, perm]] of this.table(this.attached!)) this.map1(k, hva, P, perm);
        break;
      case 'disable':
        if (!this.enabled) break;
        if (this.live()) for (const k of this.table(this.attached!).keys()) this.unmap1(k, P);
        this.enabled = false;
        this.mapRam();
        break;
      default:
        break;
    }
  }
}
