// The lab's replay of the real recording on the real kernel, run as a child
// process by replay.lab.ts so every VFIO file descriptor it opens is closed
// when it exits (vfio-core's objects close on garbage collection only, and a
// device fd left open would make a later unbind of the device wait forever).
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
import { VTD_HOST, X86_MSI_WINDOW } from '../target';
import { hostIommuInfoOf, mockHostConfig, VfioDmaTarget } from '../vfio-target';
import { IommuType, PciRegion, VfioError, VfioHost, type Device } from '../../vfio/index';
import { allocatePinnable } from './memory';

const RAM = 64 << 20;
/** Moves the recording's IOVAs (just under 4 GiB) just under 256 MiB: edu's DMA mask is 28 bits. */
const IOVA_DELTA = -0xf0000000n;

function recordingText(): { text: string; source: string } {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'pnpm-workspace.yaml')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const full = path.join(dir, '..', 'shared', 'data', 'guest-iommu-e1000e-strict-6.1.txt');
  if (fs.existsSync(full)) return { text: fs.readFileSync(full, 'utf8'), source: 'full recording' };
  const excerpt = path.join(dir, 'packages', 'core', 'src', 'dma', 'fixtures', 'e1000e-strict-6.1-phase1.txt');
  return { text: fs.readFileSync(excerpt, 'utf8'), source: 'excerpt' };
}

function errno(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof VfioError ? e.code : String(e);
  }
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
  const container = vfio.openContainer();
  const group = vfio.openGroup(groupId);
  group.setContainer(container);
  container.setIommu(IommuType.Type1v2);
  const host = hostIommuInfoOf(container);
  const mem = allocatePinnable(RAM);
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
    const device = group.device(bdf);
    device.writeConfig16(4, device.readConfig16(4) | 0x6); // memory space + bus master
    const bar0 = device.mapRegion(PciRegion.Bar0, 0, 4096);
    // A live mapping S (pattern in its page) -> edu; edu -> another live mapping T: T's page must now hold the pattern.
    const pages = [...live].filter((m) => m.perm === 3);
    const s = pages[0]!;
    const t = pages[pages.length - 1]!;
    const off = (m: { gpa: bigint }) => Number(m.gpa);
    const pattern = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 7 + 13) & 0xff));
    pattern.copy(mem.bytes, off(s));
    mem.bytes.fill(0, off(t), off(t) + 64);
    const okIn = eduDma(bar0, s.iova, false, 64);
    const okOut = eduDma(bar0, t.iova, true, 64);
    out.eduLiveCopy = okIn && okOut && mem.bytes.subarray(off(t), off(t) + 64).equals(pattern);
    // A freed IOVA: the edu write must not land in the page it last pointed to.
    const freed = trace.ops.filter((o) => o.op === 'map' && !liveSet.has(o.iova)).pop() as { iova: bigint; gpa: bigint } | undefined;
    if (freed) {
      const before = Buffer.from(mem.bytes.subarray(Number(freed.gpa), Number(freed.gpa) + 64));
      eduDma(bar0, freed.iova, true, 64);
      out.eduFreedUntouched = mem.bytes.subarray(Number(freed.gpa), Number(freed.gpa) + 64).equals(before);
      // Unless the same page is still live elsewhere the write could not land anywhere; say which.
      out.eduFreedPageShared = live.some((m) => m.gpa <= freed.gpa && freed.gpa < m.gpa + m.size);
    }
    device.writeConfig16(4, device.readConfig16(4) & ~0x4);
  }

  // Leave the container empty; the fds close when this process exits (with a
  // device fd open the kernel refuses VFIO_GROUP_UNSET_CONTAINER: EBUSY).
  container.unmapAll();
  if (mode !== 'edu') group.unsetContainer();
  return out;
}

if (require.main === module) {
  const [bdf, mode] = process.argv.slice(2);
  if (!bdf) throw new Error('usage: replay-child BDF [edu] | --mock');
  process.stdout.write(JSON.stringify(runLabReplay(bdf, mode)) + '\n');
}
