// The published aarch64 addon on a real arm64 kernel: a type1v2 container
// for the edu's group opened through vfio-core's napi binding, memory mapped,
// edu DMA through the SMMUv3, unmapped, and edu DMA refused after.
//
//   node napi-cases.js ADDON.node kernel BDF
//   node napi-cases.js ADDON.node mock BDF GROUP MOCK-CONFIG-JSON
//
// The arm64 lab's GICv3 guest runs it with Debian's arm64 Node on the very
// file `pnpm release:check` builds and packs for @vfiokit/vfio-core-linux-
// arm64-gnu; the runner then runs it on the host against vfio-core's mock
// with the SMMUv3 profile and requires the same lines, case by case.
//
// Like the release check's mock-cases.js it must run on Debian's Node with
// nothing installed: CommonJS, only Node's own modules and that file.
import type * as VfioCore from '@vfiokit/vfio-core';
import { readlinkSync } from 'node:fs';
import { outcome, show } from '../../release/mock-cases';

type Native = typeof VfioCore;

const TYPE1V2 = 3;
const SPAPR_TCE_V2 = 7;
const READ_WRITE = 3;
const CONFIG_REGION = 7;
/** Where the two pages go: below edu's 28-bit DMA mask and the SMMU's MSI doorbell (0x8000000). */
const IOVA = 0x100000n;
/** The SMMUv3's software MSI doorbell (MSI_IOVA_BASE in drivers/iommu/arm/arm-smmu-v3). */
const DOORBELL = 0x8000000n;
/** edu's own buffer in its DMA address space (hw/misc/edu.c DMA_START). */
const EDU_BUFFER = 0x40000n;
const TEXT = 'vfiokit aarch64 on arm64';

/** edu runs a DMA from a timer (100 ms of the guest's clock): wait until its command register says done. */
function waitDma(bar: VfioCore.MappedRegion): number {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 500; i++) {
    const cmd = bar.read32(0x98);
    if ((cmd & 1) === 0) return cmd;
    Atomics.wait(sleeper, 0, 0, 10);
  }
  throw new Error("edu's DMA did not finish within 5 s (command register bit 0 still set)");
}

function dma(bar: VfioCore.MappedRegion, src: bigint, dst: bigint, count: number, cmd: number): number {
  bar.write64(0x80, src);
  bar.write64(0x88, dst);
  bar.write64(0x90, BigInt(count));
  bar.write32(0x98, cmd);
  return waitDma(bar);
}

export interface NapiCase {
  readonly name: string;
  readonly run: () => unknown;
}

/**
 * The cases, in order; they share one container. `host` is the kernel or
 * the mock, `group` the edu's IOMMU group, `bdf` the edu.
 */
export function napiCases(native: Native, host: VfioCore.VfioBackend, group: number, bdf: string): NapiCase[] {
  const { HostMemory } = native;
  let container: VfioCore.Type1Container | undefined;
  let bar: VfioCore.MappedRegion | undefined;
  const mem = new HostMemory(0x3000);
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('an earlier case failed to set up what this one needs');
    return v;
  };
  return [
    {
      name: "the binding reaches VFIO: API version, type1v2, and the edu's group viable",
      run: () => ({ api: host.apiVersion(), type1v2: host.checkExtension(TYPE1V2), spaprV2: host.checkExtension(SPAPR_TCE_V2), group: host.groupStatus(group) }),
    },
    {
      name: "a type1v2 container for the edu's group reports the SMMUv3's page sizes and IOVA ranges (the MSI doorbell cut out)",
      run: () => {
        container = host.openType1([group], TYPE1V2);
        return { groups: container.groups, info: container.iommuInfo() };
      },
    },
    {
      name: 'a map into the MSI doorbell window is refused; two pages map at IOVA 0x100000',
      run: () => {
        const c = need(container);
        return {
          doorbell: outcome(() => c.mapDma(DOORBELL, mem.address, 0x1000n, READ_WRITE)),
          map: outcome(() => c.mapDma(IOVA, mem.address, 0x2000n, READ_WRITE)),
          dmaAvail: c.iommuInfo().dmaAvail ?? null,
        };
      },
    },
    {
      name: "edu's DMA engine copies RAM into its buffer and back through the SMMU",
      run: () => {
        const dev = need(container).device(bdf);
        // PCI_COMMAND: memory space and bus master, or edu's DMA is dropped.
        dev.writeRegion(CONFIG_REGION, 4, Uint8Array.of(0x06, 0x00));
        bar = dev.mapRegion(0, 0, 0x1000);
        mem.write(0, Buffer.from(TEXT));
        const toDevice = dma(bar, IOVA, EDU_BUFFER, TEXT.length, 1);
        const toRam = dma(bar, EDU_BUFFER, IOVA + 0x1000n, TEXT.length, 3);
        return { toDevice, toRam, copied: mem.read(0x1000, TEXT.length).toString() };
      },
    },
    {
      name: "after unmap, edu's DMA to the IOVA writes nothing (the SMMU faults it)",
      run: () => {
        const c = need(container);
        const b = need(bar);
        const unmapped = c.unmapDma(IOVA, 0x2000n);
        mem.write(0x1000, Buffer.alloc(TEXT.length));
        const status = dma(b, EDU_BUFFER, IOVA + 0x1000n, TEXT.length, 3);
        const untouched = mem.read(0x1000, TEXT.length).every((x) => x === 0);
        return { unmapped, status, untouched, dmaAvail: c.iommuInfo().dmaAvail ?? null };
      },
    },
    {
      name: 'the container closes and the group is free again',
      run: () => {
        need(container).close();
        mem.free();
        return { group: host.groupStatus(group) };
      },
    },
  ];
}

/**
 * One line of output. An error's `object` names a descriptor ("kernel
 * container fd 19", "mock container fd 1004"), which differs between runs
 * and sides, so it is left out; code, errno and ioctl stay.
 */
function line(value: unknown): string {
  return show(JSON.parse(show(value), (k, v: unknown) => (k === 'object' ? undefined : v)));
}

function groupOf(bdf: string): number {
  const link = readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`);
  return Number(link.slice(link.lastIndexOf('/') + 1));
}

function main(): void {
  const [file, backend, bdf, groupArg, config] = process.argv.slice(2);
  if (file === undefined || (backend !== 'kernel' && backend !== 'mock') || bdf === undefined || (backend === 'mock' && (groupArg === undefined || config === undefined))) {
    process.stderr.write('usage: node napi-cases.js ADDON.node kernel BDF | ADDON.node mock BDF GROUP MOCK-CONFIG-JSON\n');
    process.exit(2);
  }
  const native = require(file) as Native;
  const group = backend === 'kernel' ? groupOf(bdf) : Number(groupArg);
  const host = backend === 'kernel' ? native.VfioBackend.kernel() : native.VfioBackend.mock(JSON.parse(config!) as VfioCore.MockHostConfig);
  process.stdout.write(`${show({ group, bdf, arch: process.arch, node: process.version })}\n`);
  for (const c of napiCases(native, host, group, bdf)) {
    let text: string;
    try {
      text = line({ case: c.name, saw: outcome(c.run) });
    } catch (err) {
      // Not a VFIO error (those are in `saw`): the case could not go on.
      text = line({ case: c.name, threw: err instanceof Error ? err.message : String(err) });
    }
    process.stdout.write(`${text}\n`);
  }
  process.stdout.write(`${show({ end: backend })}\n`);
}

if (require.main === module) main();
