// Mock cases through the native addon, for a binary of any target triple.
//
//   node mock-cases.js ADDON.node
//
// Loads the addon given (not through the package: the point is this very
// file, built for this triple) and runs vfio-core's mock through it: the API
// and extension checks, a type1v2 container's IOMMU info, single and batched
// map/unmap with the kernel's refusals (errno and ioctl), the edu device's
// config space, BAR reads through read() and mmap, a DMA by the edu engine
// into host memory through the container's mappings, and an sPAPR TCE
// container. Each case prints one JSON line; the release check runs this on
// x86_64 natively and on aarch64 and ppc64le under qemu-user, and requires
// the same lines from each (the mock answers as the kernel does whatever
// CPU it runs on).
//
// It must run on the oldest Node a check uses (Debian's, under qemu-user)
// with nothing installed: plain CommonJS, no imports but Node's own.
import type * as VfioCore from '@vfiokit/vfio-core';

type Native = typeof VfioCore;

const TYPE1V2 = 3;
const SPAPR_TCE_V2 = 7;
const READ_WRITE = 3;
const CONFIG_REGION = 7;
const EDU = '0000:00:03.0';

/** JSON with bigints as hex, the way kernel interfaces print addresses. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

/** What a call answered: its value, or the error's stable fields (not its wording). */
export function outcome(call: () => unknown): unknown {
  try {
    return { ok: call() ?? null };
  } catch (err) {
    const e = err as { code?: string; errno?: number; ioctl?: string; object?: string; entryIndex?: number };
    if (e.code === undefined) throw err;
    return { code: e.code, errno: e.errno, ioctl: e.ioctl, object: e.object, entryIndex: e.entryIndex ?? null };
  }
}

export interface MockCase {
  readonly name: string;
  readonly run: () => unknown;
  /**
   * The case moves data between the device model and this process's memory,
   * which the mock does with process_vm_readv/writev on itself (bus.rs: an
   * unmapped address fails with EFAULT instead of crashing). qemu-user 7.2
   * does not implement those two calls (ENOSYS), so under it such a case
   * cannot run as on a real CPU; the release check skips it there.
   */
  readonly selfMemory?: boolean;
}

/** The cases, each returning what it saw; `native` is the addon under test. */
export function mockCases(native: Native): MockCase[] {
  const { VfioBackend, TceContainer, HostMemory } = native;
  const cases: [string, () => unknown, boolean?][] = [
    [
      'the API version and the IOMMU extensions of a type1 host',
      () => {
        const host = VfioBackend.mock();
        return { kind: host.kind, api: host.apiVersion(), type1v2: host.checkExtension(TYPE1V2), spaprV2: host.checkExtension(SPAPR_TCE_V2), group1: host.groupStatus(1) };
      },
    ],
    [
      'a type1v2 container reports the IOMMU as the lab VT-d answered',
      () => {
        const c = VfioBackend.mock().openType1([1], TYPE1V2);
        return { groups: c.groups, info: c.iommuInfo(), type1v2: c.checkExtension(TYPE1V2) };
      },
    ],
    [
      'map and unmap one range, then the kernel refusals in their errno order',
      () => {
        const c = VfioBackend.mock().openType1([1], TYPE1V2);
        const mem = new HostMemory(0x4000);
        const va = mem.address;
        const steps = {
          map: outcome(() => c.mapDma(0x100000n, va, 0x4000n, READ_WRITE)),
          again: outcome(() => c.mapDma(0x100000n, va, 0x1000n, READ_WRITE)),
          unaligned: outcome(() => c.mapDma(0x200800n, va, 0x1000n, READ_WRITE)),
          inMsiWindow: outcome(() => c.mapDma(0xfee00000n, va, 0x1000n, READ_WRITE)),
          split: outcome(() => c.unmapDma(0x101000n, 0x1000n)),
          unmap: outcome(() => c.unmapDma(0x100000n, 0x4000n)),
        };
        mem.free();
        return steps;
      },
    ],
    [
      'a batch of 4096 contiguous pages coalesces to one ioctl, a scattered one does not',
      () => {
        const host = VfioBackend.mock();
        const c = host.openType1([1], TYPE1V2);
        // A map pins its host pages, on the mock as on the kernel: the
        // addresses lie in memory this process has reserved.
        const mem = HostMemory.reserve(32n << 20n);
        const contiguous = new BigUint64Array(4096 * 3);
        const scattered = new BigUint64Array(64 * 3);
        for (let i = 0; i < 4096; i++) contiguous.set([0x1_0000_0000n + BigInt(i) * 0x1000n, mem.address + BigInt(i) * 0x1000n, 0x1000n], i * 3);
        for (let i = 0; i < 64; i++) scattered.set([0x2_0000_0000n + BigInt(i) * 0x2000n, mem.address + (16n << 20n) + BigInt(i) * 0x2000n, 0x1000n], i * 3);
        return {
          contiguous: c.mapBatch(contiguous, READ_WRITE),
          scattered: c.mapBatch(scattered, READ_WRITE),
          overlapping: outcome(() => c.mapBatch(scattered.slice(0, 6), READ_WRITE)),
          unmapAll: c.unmapAll(),
          ioctls: host.ioctlCount(),
        };
      },
    ],
    [
      "edu's config space, BAR0 through read() and through mmap",
      () => {
        const dev = VfioBackend.mock().openType1([1], TYPE1V2).device(EDU);
        const config = dev.readRegion(CONFIG_REGION, 0, 16);
        const bar0 = dev.regionInfo(0);
        const mapped = dev.mapRegion(0, 0, 0x1000);
        return {
          info: dev.info(),
          vendorDevice: config.readUInt32LE(0).toString(16),
          bar0: { flags: bar0.flags, size: bar0.size },
          ident: dev.readRegion(0, 0, 4).readUInt32LE(0).toString(16),
          identMapped: mapped.read32(0).toString(16),
          irqs: [0, 1, 2].map((i) => dev.irqInfo(i)),
        };
      },
    ],
    [
      "edu's DMA engine copies host memory through the container's mappings, and faults outside them",
      () => {
        const c = VfioBackend.mock().openType1([1], TYPE1V2);
        const dev = c.device(EDU);
        // PCI_COMMAND: memory space and bus master, or edu's DMA is dropped.
        dev.writeRegion(CONFIG_REGION, 4, Uint8Array.of(0x06, 0x00));
        // Three pages, the first two mapped at IOVA 0x10000: the third is host
        // memory the device must not reach.
        const mem = new HostMemory(0x3000);
        mem.write(0, Buffer.from('vfiokit on every triple'));
        c.mapDma(0x10000n, mem.address, 0x2000n, READ_WRITE);
        const bar = dev.mapRegion(0, 0, 0x1000);
        const dma = (src: bigint, dst: bigint, cmd: number) => {
          bar.write64(0x80, src);
          bar.write64(0x88, dst);
          bar.write64(0x90, 23n);
          bar.write32(0x98, cmd);
          return bar.read32(0x98);
        };
        // RAM (IOVA 0x10000) -> edu's buffer (0x40000), then back to IOVA 0x11000.
        const toDevice = dma(0x10000n, 0x40000n, 1);
        const toRam = dma(0x40000n, 0x11000n, 3);
        const copied = mem.read(0x1000, 23).toString();
        // IOVA 0x12000, just past the mapping: the IOMMU faults, and the
        // third page stays as it was.
        const unmapped = dma(0x40000n, 0x12000n, 3);
        const untouched = mem.read(0x2000, 23).every((b) => b === 0);
        mem.free();
        return { toDevice, toRam, copied, unmapped, untouched };
      },
      true,
    ],
    [
      'an sPAPR TCE v2 container: the default window, a 64-bit window, a TCE and its refusal',
      () => {
        const c = TceContainer.open(VfioBackend.mock({ spapr: true }), 1, true);
        const before = c.windows();
        const info = c.info();
        const mem = new HostMemory(0x10000);
        const steps = {
          register: outcome(() => c.register(mem.address, 0x10000n)),
          removeDefault: outcome(() => c.removeWindow(0n)),
          create: outcome(() => c.createWindow(12, 1n << 30n)),
          map: outcome(() => c.map(0x1000n, mem.address, 0x1000n, READ_WRITE)),
          again: outcome(() => c.map(0x1000n, mem.address, 0x1000n, READ_WRITE)),
        };
        const after = c.windows();
        c.release();
        mem.free();
        return { info, before, steps, after };
      },
    ],
  ];
  return cases.map(([name, run, selfMemory]) => ({ name, run, ...(selfMemory ? { selfMemory } : {}) }));
}

function main(): void {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node mock-cases.js ADDON.node\n');
    process.exit(2);
  }
  const native = require(file) as Native;
  for (const c of mockCases(native)) {
    process.stdout.write(`${show({ case: c.name, saw: outcome(c.run), ...(c.selfMemory ? { selfMemory: true } : {}) })}\n`);
  }
  process.stdout.write(`${show({ end: process.arch })}\n`);
}

if (require.main === module) main();
