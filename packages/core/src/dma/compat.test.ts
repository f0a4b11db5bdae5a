import test from 'ava';
import { checkCompatibility } from './compat';
import { spaprTceIommu, virtioIommu, vtdIommu, type GuestModel } from './guest';
import { fragmentedLayout } from './generate';
import { q35Layout } from './layout';
import { planContainers } from './topology';
import { VTD_HOST, X86_MSI_WINDOW } from './target';

const GiB = 1n << 30n;
const g12 = { id: 12, reservedRegions: [X86_MSI_WINDOW] };
const g13 = { id: 13, reservedRegions: [X86_MSI_WINDOW] };
const guest = (over: Partial<GuestModel> = {}): GuestModel => ({ name: 'vm', arch: 'x86_64', memory: q35Layout(8n * GiB), iommu: { kind: 'none' }, ...over });
const codes = (r: ReturnType<typeof checkCompatibility>) => r.findings.map((f) => `${f.severity}:${f.code}`);

test('an 8 GiB guest without an IOMMU on a VT-d host works for every group', (t) => {
  const r = checkCompatibility(guest(), VTD_HOST, [g12, g13]);
  t.deepEqual([r.ok, codes(r)], [true, []]);
});

test('a 39-bit guest IOMMU cannot reach a BAR placed above 2^39', (t) => {
  const memory = { ...q35Layout(8n * GiB), bars: [{ name: '0000:01:00.0 BAR2', gpa: 1n << 40n, size: 1n << 30n }] };
  const r = checkCompatibility(guest({ memory, iommu: vtdIommu({ addressWidth: 39 }) }), VTD_HOST, [g12]);
  t.true(codes(r).includes('error:BAR_UNREACHABLE'));
  t.regex(r.findings.find((f) => f.code === 'BAR_UNREACHABLE')!.message, /above the 39-bit guest IOMMU's reach \(0x7fffffffff\)/);
});

test('guest RAM above the host IOVA ranges is an error for each group, named as QEMU would fail at run time', (t) => {
  const memory = { regions: [{ name: 'ram-above-4g', gpa: 1n << 40n, size: GiB, source: 'boot' as const }] };
  const r = checkCompatibility(guest({ memory }), VTD_HOST, [g12, g13]);
  t.deepEqual(r.assignments.map((a) => a.works), [false, false]);
  t.regex(r.assignments[0]!.reasons[0]!, /VFIO_MAP_DMA failed: -22/);
});

test('a 48-bit guest IOMMU on a 39-bit host is refused with the aw-bits to use', (t) => {
  const r = checkCompatibility(guest({ iommu: vtdIommu({ addressWidth: 48 }) }), VTD_HOST, [g12]);
  t.regex(r.findings.find((f) => f.code === 'ADDRESS_WIDTH')!.message, /aw-bits=39/);
});

test('a fragmented layout needing more mappings than dma_entry_limit is ENOSPC, told apart from memlock', (t) => {
  const memory = fragmentedLayout({ total: 1n << 40n, fragments: 70000, seed: 1 });
  const r = checkCompatibility(guest({ memory }), { ...VTD_HOST, iovaRanges: [{ start: 0n, size: 1n << 48n }] }, [g12], {
    memlock: { soft: 'unlimited' },
  });
  t.deepEqual(codes(r), ['error:ENTRY_LIMIT']);
  t.regex(r.findings[0]!.message, /70000 mappings, over dma_entry_limit 65535 \(the kernel answers ENOSPC, not ENOMEM\)/);
});

test('two groups behind a guest IOMMU pin twice guest RAM, over a 8 GiB memlock limit with ENOMEM named', (t) => {
  const r = checkCompatibility(guest({ iommu: vtdIommu() }), VTD_HOST, [g12, g13], { memlock: { soft: 8n * GiB } });
  t.regex(r.findings.find((f) => f.code === 'MEMLOCK')!.message, /2 container\(s\) may pin 16 GiB \(17 GiB with headroom\), over RLIMIT_MEMLOCK 8 GiB \(the kernel answers ENOMEM/);
});

test('a guest IOMMU with 4 KiB pages on a host whose smallest IOMMU page is 64 KiB cannot be mirrored', (t) => {
  const r = checkCompatibility(guest({ iommu: virtioIommu({ addressWidth: 39 }) }), { ...VTD_HOST, pageSizes: 0x10000n | 0x20000000n }, [g12]);
  t.true(codes(r).includes('error:PAGE_SIZE'));
});

test('intel-iommu without caching mode is refused', (t) => {
  const r = checkCompatibility(guest({ iommu: vtdIommu({ cachingMode: false }) }), VTD_HOST, [g12]);
  t.true(codes(r).includes('error:CACHING_MODE'));
});

test('64 KiB TCEs over RAM backed by 4 KiB host pages are flagged, as maps into such a window fail', (t) => {
  const r = checkCompatibility(guest({ arch: 'ppc64', iommu: spaprTceIommu({ pageShifts: [12, 16] }) }), VTD_HOST, [g12], {
    spapr: { ddwPageSizes: 0x1011000n, maxWindowSize: 1n << 40n, dma32Size: 1n << 30n, ramPageShift: 12 },
  });
  t.deepEqual(codes(r), ['warning:TCE_PAGE_SIZE']);
});

test("a guest IOMMU present but off also pins N x RAM: each group's container holds the identity map", (t) => {
  const p = planContainers(guest({ iommu: vtdIommu({ enabled: false }) }), [g12, g13]);
  t.deepEqual([p.policy, p.containers.map((c) => c.holds), p.pinnedBytes], ['identity', ['all-ram', 'all-ram'], 16n * GiB]);
});

test('containers: no guest IOMMU shares one container; a guest IOMMU gives each group its own and N x RAM to pin', (t) => {
  t.deepEqual(planContainers(guest(), [g12, g13]).containers.map((c) => c.groups), [[12, 13]]);
  const shadow = planContainers(guest({ iommu: vtdIommu({ enabled: true }) }), [g12, g13], { soft: 32n * GiB });
  t.deepEqual([shadow.containers.map((c) => c.groups), shadow.pinnedBytes, shadow.fitsMemlock], [[[12], [13]], 16n * GiB, true]);
});

test('sPAPR PEs each get a container but preregistered RAM is charged once', (t) => {
  const p = planContainers(guest({ arch: 'ppc64', iommu: spaprTceIommu() }), [g12, g13]);
  t.deepEqual([p.policy, p.containers.length, p.pinnedBytes], ['spapr', 2, 8n * GiB]);
});
