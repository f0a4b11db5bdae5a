// The lab's replay of the real recording on the real kernel, run as a child
// process by replay.lab.ts so every VFIO file descriptor it opens is closed
// when it exits even if the run throws (a device fd left open would make a
// later unbind of the device wait forever); a normal run closes its container.
//
//   node replay-child.js BDF [edu]
//   node replay-child.js --mock        (the same run on vfio-core's mock, for a unit test)
//
// Prints one JSON line: what was replayed, and what the kernel said.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { vtdIommu } from '../guest';
import { relocateTrace, replayTrace } from '../replay';
import { importLinuxTrace } from '../trace-linux';
import { Type1Model } from '../type1-model';
import { EntryLimitError } from '../errors';
import { IdentityMap } from '../identity';
import { ContainerMappings } from '../mappings';
import { VTD_HOST, X86_MSI_WINDOW } from '../target';
import { hostIommuInfoOf, mockHostConfig, VfioDmaTarget } from '../vfio-target';
import { HostMemory, PciRegion, VfioHost, type Device } from '../../vfio/index';
import { outcome as errno } from '../../vfio/lab/support';

const RAM = 64 << 20;
/** Moves the recording's IOVAs (just under 4 GiB) just under 256 MiB: edu's DMA mask is 28 bits. */
const IOVA_DELTA = -0xf0000000n;

function recordingText(): { text: string; source: string } {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'pnpm-workspace.yaml')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const full = path.join(dir, 'packages', 'core', 'src', 'dma', 'fixtures', 'guest-iommu-e1000e-strict-6.1.txt');
  return { text: fs.readFileSync(full, 'utf8'), source: 'full recording' };
}

/** edu: copy `count` bytes between an IOVA and its buffer at 0x40000; false if it did not finish. */
function eduDma(bar0: ReturnType<Device['mapRegion']>, iova: bigint, toRam: boolean, count: number): boolean {
  bar0.write64(toRam ? 0x80 : 0x88, 0x40000n);
  bar0.write64(toRam ? 0x88 : 0x80, iova);
  bar0.write32(0x90, count);
  bar0.write32(0x98, 1 | (toRam ? 2 : 0));
  for (let i = 0; i < 100000; i++) if ((bar0.read32(0x98) & 1) === 0) return true;
  return false;
}

/** The replay and its checks; `bdf` '--mock' runs it on vfio-core's mock instead of the kernel. */
export function runLabReplay(bdf: string, mode?: string): Record<string, unknown> {
  const mock = bdf === '--mock';
  const groupId = mock ? 1 : Number(fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop());
  const vfio = mock ? VfioHost.mock(mockHostConfig(VTD_HOST, [{ id: 1, reservedRegions: [X86_MSI_WINDOW] }])) : VfioHost.kernel();
  const container = vfio.openType1([groupId]);
  const host = hostIommuInfoOf(container);
  // Guest RAM must be pages of this process at a known address
  // (VFIO_IOMMU_MAP_DMA pins the caller's pages): vfio-core's HostMemory is
  // its own mmap and says where it is. Finding a Buffer's address in
  // /proc/self/maps was fragile: the kernel merges adjacent anonymous VMAs
  // (vma_merge), so a Buffer need not start a mapping of its own.
  const mem = new HostMemory(RAM);
  const layout = { regions: [{ name: 'ram', gpa: 0n, size: BigInt(RAM), source: 'boot' as const, hva: mem.address }] };

  const { text, source } = recordingText();
  const recorded = importLinuxTrace(text, { device: '0000:00:02.0' }).trace;
  const trace = relocateTrace(recorded, { domain: 2, group: groupId, iovaDelta: IOVA_DELTA, ramBytes: BigInt(RAM) });
  const reservedRegions = (mock ? '0x00000000fee00000 0x00000000feefffff msi\n' : fs.readFileSync(`/sys/kernel/iommu_groups/${groupId}/reserved_regions`, 'utf8'))
    .trim()
    .split('\n')
    .filter((l) => l)
    .map((l) => {
      const [s, e, type] = l.split(' ');
      return { start: BigInt(s!), size: BigInt(e!) - BigInt(s!) + 1n, type: type! };
    });
  // The model beside the kernel records what the container holds.
  const model = new Type1Model(host, new VfioDmaTarget(container));
  // The recorded guest starts with translation off: the identity map of its 64 MiB comes first.
  const r = replayTrace({ trace, layout, iommu: vtdIommu({ enabled: false }), host, groups: [{ group: { id: groupId, reservedRegions }, target: model }] });
  const live = r.translator.guestMappings(groupId);

  // Errno check: every live guest IOVA is taken (EEXIST), every IOVA the
  // guest used and let go is free (the map succeeds and is undone).
  const used = new Set<bigint>();
  for (const op of trace.ops) if (op.op === 'map') for (let o = 0n; o < op.size; o += 4096n) used.add(op.iova + o);
  const liveSet = new Set<bigint>();
  for (const m of live) for (let o = 0n; o < m.size; o += 4096n) liveSet.add(m.iova + o);
  const scratch = mem.address;
  let eexist = 0;
  let liveOther = 0;
  for (const iova of liveSet) {
    if (errno(() => container.mapDma(iova, scratch, 4096n)) === 'EEXIST') eexist++;
    else liveOther++;
  }
  let freeOk = 0;
  let freeOther = 0;
  for (const iova of used) {
    if (liveSet.has(iova)) continue;
    if (errno(() => container.mapDma(iova, scratch, 4096n)) === 'ok' && container.unmapDma(iova, 4096n) === 4096n) freeOk++;
    else freeOther++;
  }

  const out: Record<string, unknown> = {
    source,
    ops: r.ops,
    calls: r.calls,
    ioctls: r.ioctls,
    peakEntries: r.peakEntries,
    livePages: liveSet.size,
    eexist,
    liveOther,
    freePages: freeOk + freeOther,
    freeOk,
    freeOther,
    disagreements: model.disagreements,
  };

  if (mode === 'edu') {
    const device = container.device(bdf);
    device.writeConfig16(4, device.readConfig16(4) | 0x6); // memory space + bus master
    const bar0 = device.mapRegion(PciRegion.Bar0, 0, 4096);
    const bytesAt = (gpa: bigint) => mem.read(Number(gpa), 64);
    // Pairs of live read-write mappings on distinct pages: a pattern put in
    // S's page goes S -> edu -> T, and must arrive in T's page.
    const rw = live.filter((m) => m.perm === 3);
    const pairs: [typeof rw[number], typeof rw[number]][] = [];
    const usedPages = new Set<bigint>();
    for (let i = 0; i + 1 < rw.length && pairs.length < 8; i += Math.max(2, Math.floor(rw.length / 8))) {
      const [a, b] = [rw[i]!, rw[i + 1]!];
      if (a.gpa === b.gpa || usedPages.has(a.gpa) || usedPages.has(b.gpa)) continue;
      usedPages.add(a.gpa).add(b.gpa);
      pairs.push([a, b]);
    }
    let liveOk = 0;
    pairs.forEach(([a, b], k) => {
      const pattern = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 7 + 13 + k * 31) & 0xff));
      mem.write(Number(a.gpa), pattern);
      mem.write(Number(b.gpa), Buffer.alloc(64));
      if (eduDma(bar0, a.iova, false, 64) && eduDma(bar0, b.iova, true, 64) && bytesAt(b.gpa).equals(pattern)) liveOk++;
    });
    out.eduLivePairs = pairs.length;
    out.eduLiveOk = liveOk;
    // IOVAs the guest mapped and let go: an edu write through one must not
    // reach the page it last pointed to (the IOMMU faults it).
    const freedOps = new Map<bigint, bigint>();
    for (const o of trace.ops) if (o.op === 'map' && !liveSet.has(o.iova)) freedOps.set(o.iova, o.gpa);
    const freed = [...freedOps].filter((_, i, all) => i % Math.max(1, Math.floor(all.length / 8)) === 0).slice(0, 8);
    let untouched = 0;
    for (const [iova, gpa] of freed) {
      const before = bytesAt(gpa);
      eduDma(bar0, iova, true, 64);
      if (bytesAt(gpa).equals(before)) untouched++;
    }
    out.eduFreed = freed.length;
    out.eduFreedUntouched = untouched;
    device.writeConfig16(4, device.readConfig16(4) & ~0x4);
  }

  // Unmap before the memory goes, then close device, group and container in order.
  container.unmapAll();
  container.close();
  mem.free();
  return out;
}

/**
 * The entry limit on the kernel: an identity layout of one more region than
 * `dma_entry_limit` is refused by the policy with nothing mapped; a layout of
 * exactly the limit maps in one batched call; one more map is the kernel's
 * ENOSPC (not ENOMEM: this process has CAP_IPC_LOCK, so memlock is not the cause).
 */
export function runEntryLimit(bdf: string): Record<string, unknown> {
  const mock = bdf === '--mock';
  const groupId = mock ? 1 : Number(fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop());
  const vfio = mock ? VfioHost.mock(mockHostConfig({ ...VTD_HOST, dmaEntryLimit: 4096 }, [{ id: 1, reservedRegions: [X86_MSI_WINDOW] }])) : VfioHost.kernel();
  const container = vfio.openType1([groupId]);
  const host = hostIommuInfoOf(container);
  const limit = host.dmaEntryLimit;
  const mem = new HostMemory((limit + 1) * 4096);
  // One page per region, a page apart in guest physical space so no two coalesce.
  const layoutOf = (n: number) => ({
    regions: Array.from({ length: n }, (_, i) => ({ name: `r${i}`, gpa: BigInt(i) * 0x2000n, size: 0x1000n, source: 'boot' as const, hva: mem.address + BigInt(i) * 0x1000n })),
  });
  const groups = [{ id: groupId, reservedRegions: [X86_MSI_WINDOW] }];
  const target = new VfioDmaTarget(container);
  let refused = 'none';
  const over = new ContainerMappings('lab container', target, limit);
  try {
    new IdentityMap(over, host, groups).mapAll(layoutOf(limit + 1));
  } catch (e) {
    refused = e instanceof EntryLimitError ? e.code : String(e);
  }
  const afterRefusal = errno(() => container.mapDma(0x100000000n, mem.address, 0x1000n));
  if (afterRefusal === 'ok') container.unmapDma(0x100000000n, 0x1000n);
  const at = new ContainerMappings('lab container', target, limit);
  new IdentityMap(at, host, groups).mapAll(layoutOf(limit));
  const beyond = errno(() => container.mapDma(0x100000000n, mem.address, 0x1000n));
  container.unmapAll();
  container.close();
  mem.free();
  return { limit, refused, afterRefusal, mappedAtLimit: at.size, callsAtLimit: at.stats.calls, beyond };
}

if (require.main === module) {
  const [bdf, mode] = process.argv.slice(2);
  if (!bdf) throw new Error('usage: replay-child BDF [edu|entry-limit] | --mock [entry-limit]');
  process.stdout.write(JSON.stringify(mode === 'entry-limit' ? runEntryLimit(bdf) : runLabReplay(bdf, mode)) + '\n');
}
