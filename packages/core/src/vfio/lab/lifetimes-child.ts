// The lifetimes check on the real kernel, run by lifetimes.lab.ts as
// `node --expose-gc lifetimes-child.js BDF` (or `--mock` for its unit test),
// in a child so a failure cannot leave a VFIO fd open in the lab's process.
//
// Maps two pages for edu, forces collections, and checks with edu DMA that
// the mappings still work: first while the container object is held, then
// with only the device held (the container must stay open through it).
// Prints one JSON line.
import * as fs from 'node:fs';
import { HostMemory, PciRegion, VfioHost, type Device } from '../index';
import { outcome as code } from './support';

const SRC_IOVA = 0x100000n;
const DST_IOVA = 0x200000n;

async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  // Garbage enough to make the collector look at everything, twice around
  // the loop so napi's deferred finalizers run.
  for (let i = 0; i < 3; i++) {
    Array.from({ length: 10000 }, (_, k) => ({ k }));
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

/** edu (hw/misc/edu.c): copy `count` bytes src -> dst through its buffer at 0x40000. */
function eduCopy(bar0: ReturnType<Device['mapRegion']>, from: bigint, to: bigint, count: number): boolean {
  const run = (src: bigint, dst: bigint, toRam: boolean) => {
    bar0.write64(0x80, src);
    bar0.write64(0x88, dst);
    bar0.write32(0x90, count);
    bar0.write32(0x98, 1 | (toRam ? 2 : 0));
    for (let i = 0; i < 1_000_000; i++) if ((bar0.read32(0x98) & 1) === 0) return true;
    return false;
  };
  return run(from, 0x40000n, false) && run(0x40000n, to, true);
}

export async function runLifetimes(bdf: string): Promise<Record<string, unknown>> {
  const mock = bdf === '--mock';
  const address = mock ? '0000:00:03.0' : bdf;
  const groupId = mock ? 1 : Number(fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop());
  const vfio = mock ? VfioHost.mock() : VfioHost.kernel();
  const src = new HostMemory(4096);
  const dst = new HostMemory(4096);
  const out: Record<string, unknown> = { group: groupId };

  let container: ReturnType<VfioHost['openType1']> | undefined = vfio.openType1([groupId]);
  // What a fresh container offers (the lab loads vfio_iommu_type1 with dma_entry_limit=4096).
  const availFresh = container.iommuInfo().dmaAvail ?? 0;
  let device: Device | undefined = container.device(address);
  device.writeConfig16(4, device.readConfig16(4) | 0x6); // memory space + bus master
  container.mapDma(SRC_IOVA, src.address, 0x1000n);
  container.mapDma(DST_IOVA, dst.address, 0x1000n);
  await collect();
  out.remapAfterGc = code(() => container!.mapDma(SRC_IOVA, src.address, 0x1000n));
  out.iommuInfoAfterGc = code(() => container!.iommuInfo());
  let bar0: ReturnType<Device['mapRegion']> | undefined = device.mapRegion(PciRegion.Bar0, 0, 4096);
  const first = 'first copy, container held';
  src.write(0, Buffer.from(first));
  await collect();
  out.firstCopy = eduCopy(bar0, SRC_IOVA, DST_IOVA, first.length) && dst.read(0, first.length).toString() === first;

  // Only the device and its BAR mapping are left referenced.
  container = undefined;
  await collect();
  const second = 'second copy, device only';
  src.write(0, Buffer.from(second));
  out.secondCopy = eduCopy(bar0, SRC_IOVA, DST_IOVA, second.length) && dst.read(0, second.length).toString() === second;
  out.reopenWhileHeld = code(() => vfio.openType1([groupId]));

  // The last handles go (the BAR mapping keeps its device, so it goes too):
  // device, group and container close in that order, so the group opens
  // again and holds no mapping.
  device.writeConfig16(4, device.readConfig16(4) & ~0x4);
  device = undefined;
  bar0 = undefined;
  await collect();
  const again = vfio.openType1([groupId]);
  out.reopenAfterGc = 'ok';
  out.mappingsAfterReopen = availFresh - (again.iommuInfo().dmaAvail ?? 0);
  out.mapAfterReopen = code(() => again.mapDma(SRC_IOVA, src.address, 0x1000n));
  again.close();
  again.close();
  out.useAfterClose = code(() => again.iommuInfo());
  src.free();
  dst.free();
  return out;
}

if (require.main === module) {
  runLifetimes(process.argv[2] ?? '--mock').then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e) => {
      process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n');
      process.exit(1);
    },
  );
}
