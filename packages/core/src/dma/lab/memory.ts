// Real process memory for a lab replay: VFIO_IOMMU_MAP_DMA pins pages of the
// calling process, so "guest RAM" must be memory this process owns at a known
// address. Node does not tell a Buffer's address; this finds it from
// /proc/self/maps and /proc/self/mem (root, inside the lab guest), by a random
// marker written into the buffer.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

const PAGE = 4096;
const MIN_MMAPPED = 40 << 20;

/** A page-aligned window of a Buffer, with the virtual address of its first byte. */
export interface PinnableMemory {
  readonly bytes: Buffer;
  readonly address: bigint;
}

export function allocatePinnable(size: number): PinnableMemory {
  // A large ArrayBuffer's backing store is its own anonymous mmap, so it
  // never moves; the extra page leaves room to align. glibc serves requests
  // from its heap up to a threshold that grows to 32 MiB on 64-bit
  // (DEFAULT_MMAP_THRESHOLD_MAX), so ask for more than that: then the buffer
  // starts in the first page of a mapping of its own.
  const raw = Buffer.alloc(Math.max(size + PAGE, MIN_MMAPPED));
  const marker = randomBytes(32);
  marker.copy(raw, 0);
  const mem = fs.openSync('/proc/self/mem', 'r');
  try {
    const probe = Buffer.alloc(PAGE);
    for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw/.exec(line);
      if (!m) continue;
      const start = parseInt(m[1]!, 16);
      const end = parseInt(m[2]!, 16);
      if (end - start < raw.length) continue;
      // The buffer starts within the first page of its mapping (after a malloc header).
      const n = fs.readSync(mem, probe, 0, PAGE, start);
      const at = probe.subarray(0, n).indexOf(marker);
      if (at < 0) continue;
      const base = start + at;
      const aligned = Math.ceil(base / PAGE) * PAGE;
      return { bytes: raw.subarray(aligned - base, aligned - base + size), address: BigInt(aligned) };
    }
  } finally {
    fs.closeSync(mem);
  }
  throw new Error(`could not find a ${raw.length}-byte buffer in /proc/self/maps; the lab replay needs root and an mmap-backed Buffer`);
}
