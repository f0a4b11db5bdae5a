// vfiokit's side of `pnpm lab bench`, run in the x86 guest right after the C
// program (vfio-bench.c) in the same boot, on the same group, with the same
// entries, sizes and rounds, so every figure has the kernel's beside it:
//
//   node packages/testkit/dist/lab/bench/guest-bench.js GROUP ENTRIES RAM_MIB PIN_MAX_MIB ROUNDS
//
// It prints one JSON object on stdout, keyed like the C program's.
//   a_map_scattered   one mapBatch of ENTRIES scattered 4 KiB pages (one
//                     ioctl each: nothing coalesces), through napi.
//   b_coalesced       the guest RAM handed over as one entry per 4 KiB page
//                     (the worst a caller can give), one mapBatch: vfio-core
//                     coalesces it into one ioctl per section.
//   c_pin             one mapBatch of one entry over a fresh buffer.
//   d_unmap_batch     unmapBatch of the ENTRIES ranges (scattered: one ioctl
//                     each); d_unmap_all: unmapAll (VFIO_DMA_UNMAP_FLAG_ALL).

import { HostMemory, VfioBackend } from '@vfiokit/vfio-core';

const PAGE = 4096n;
const IOVA0 = 0x1_0000_0000n;
const READ = 1;
const RW = 3;

function main(): void {
  const [group, entries, ramMib, pinMaxMib, rounds] = process.argv.slice(2).map(Number);
  if (![group, entries, ramMib, pinMaxMib, rounds].every((v) => Number.isSafeInteger(v) && v! >= 0)) {
    process.stderr.write('usage: guest-bench GROUP ENTRIES RAM_MIB PIN_MAX_MIB ROUNDS\n');
    process.exit(2);
  }
  const n = entries!;
  const ram = BigInt(ramMib!) << 20n;
  const c = VfioBackend.kernel().openType1([group!]);

  const scattered = new HostMemory(2 * n * 4096);
  const guest = new HostMemory(Number(ram));
  const sva = scattered.address;
  const gva = guest.address;

  const mapEntries = new BigUint64Array(3 * n);
  const unmapEntries = new BigUint64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const off = 2n * BigInt(i) * PAGE;
    mapEntries.set([IOVA0 + off, sva + off, PAGE], 3 * i);
    unmapEntries.set([IOVA0 + off, PAGE], 2 * i);
  }
  // The same sections as the C program: q35's low RAM with the VGA hole and
  // the read-only ROM shadow, one entry per 4 KiB page.
  const sections: [bigint, bigint, number][] = [
    [0x0n, 0xa0000n, RW],
    [0xc0000n, 0x100000n, READ],
    [0x100000n, ram, RW],
  ];
  const leaves = sections.reduce((k, [s, e]) => k + Number((e - s) / PAGE), 0);
  const leafEntries = new BigUint64Array(3 * leaves);
  const leafFlags = new Uint32Array(leaves);
  let k = 0;
  for (const [s, e, f] of sections) {
    for (let a = s; a < e; a += PAGE, k++) {
      leafEntries.set([a, gva + a, PAGE], 3 * k);
      leafFlags[k] = f;
    }
  }

  const time = (f: () => unknown): number => {
    const t0 = process.hrtime.bigint();
    f();
    return Number(process.hrtime.bigint() - t0);
  };
  // Round 0 is a warm-up (it faults in both buffers, as the C program's
  // MAP_POPULATE and first round do), then the best of `rounds`.
  const best = { a: Infinity, b: Infinity, dBatch: Infinity, dAll: Infinity };
  let bIoctls = 0;
  for (let r = 0; r <= rounds!; r++) {
    const t = {
      a: time(() => c.mapBatch(mapEntries, RW)),
      b: 0,
      dBatch: 0,
      dAll: 0,
    };
    c.unmapAll();
    t.b = time(() => (bIoctls = c.mapBatch(leafEntries, leafFlags).ioctls));
    c.unmapAll();
    c.mapBatch(mapEntries, RW);
    t.dBatch = time(() => c.unmapBatch(unmapEntries));
    c.mapBatch(mapEntries, RW);
    t.dAll = time(() => c.unmapAll());
    if (r === 0) continue;
    for (const key of Object.keys(best) as (keyof typeof best)[]) best[key] = Math.min(best[key], t[key]);
  }
  scattered.free();
  guest.free();

  const pin: { bytes: number; ns: number }[] = [];
  for (let size = 64 * 2 ** 20; size <= pinMaxMib! * 2 ** 20; size *= 2) {
    const m = new HostMemory(size);
    const one = BigUint64Array.of(IOVA0, m.address, BigInt(size));
    pin.push({ bytes: size, ns: time(() => c.mapBatch(one, RW)) });
    c.unmapAll();
    m.free();
  }
  c.close();
  process.stdout.write(
    `${JSON.stringify({
      entries: n,
      ram_bytes: Number(ram),
      rounds,
      leaves,
      b_ioctls: bIoctls,
      a_map_scattered_ns: best.a,
      b_coalesced_ns: best.b,
      d_unmap_batch_ns: best.dBatch,
      d_unmap_all_ns: best.dAll,
      c_pin: pin,
    })}\n`,
  );
}

main();
