import { HostMemory } from '../vfio/index';
import type { GuestMemoryLayout } from './guest';
import { placeRam } from './layout';

/** A layout placed in memory this process holds, and that memory. */
export interface ReservedRam {
  readonly layout: GuestMemoryLayout;
  /** Keep it referenced while any mapping uses it; `free()` when done. */
  readonly memory: HostMemory;
}

/**
 * Guest RAM for a simulation: one sparse reservation of this process's
 * address space (nothing committed until touched) with every region placed
 * in it by `placeRam`. A map pins what it maps, on vfio-core's mock as on
 * the kernel, so simulated RAM must be mapped too; a reservation lets a
 * 64 GiB guest be simulated on a small machine.
 */
export function reserveGuestRam(layout: GuestMemoryLayout, gap = 2n << 20n): ReservedRam {
  const align = 2n << 20n;
  const total = layout.regions.reduce((n, r) => n + r.size + gap, align);
  const memory = HostMemory.reserve(total);
  const base = (memory.address + align - 1n) & ~(align - 1n);
  return { layout: placeRam(layout, base, gap), memory };
}
