import test from 'ava';
import { ARM64_HOSTS, ARM64_TOPOLOGY, initScript, qemuArgs } from './guest';

test('the two arm64 boots differ only in the GIC: an ITS, or none', (t) => {
  const m = ARM64_HOSTS.map((h) => qemuArgs(h, { vmlinuz: 'k', initramfs: 'i', results: 'r' })[1]);
  t.deepEqual(m, ['virt,iommu=smmuv3,gic-version=3', 'virt,iommu=smmuv3,gic-version=2']);
  t.deepEqual(ARM64_HOSTS.map((h) => h.facts.msiIsolated), [true, false]);
});

test("blocked and its virtio peer are two functions of one slot: behind a PCIe-to-PCI bridge they would share one SMMU stream ID", (t) => {
  const bdfs = Object.fromEntries(ARM64_TOPOLOGY.devices.map((d) => [d.role, d.bdf]));
  t.is(bdfs.blocked, '0000:03:00.0');
  t.is(bdfs['blocked-peer'], '0000:03:00.1');
});

test('the guest loads vfio_iommu_type1 with the topology dma_entry_limit and runs the suite on its virtio console', (t) => {
  const script = initScript([{ name: 'vfio_iommu_type1', path: 'kernel/drivers/vfio/vfio_iommu_type1.ko', object: Buffer.alloc(0) }], ARM64_TOPOLOGY);
  t.true(script.includes(`insmod /lib/modules/kernel/drivers/vfio/vfio_iommu_type1.ko dma_entry_limit=${ARM64_TOPOLOGY.dmaEntryLimit} `), script);
  t.regex(script, /\/bin\/vfio-lab x86 --backend kernel --topology \/etc\/topology\.json --out \/dev\/hvc0/);
});

test('an SMMU event on the console is the refusal the ITS boot must show, and the GICv2 boot must not', async (t) => {
  const { smmuEventsReport } = await import('./index');
  const line = '[   10.1] arm-smmu-v3 9050000.smmuv3: event 0x10 received:';
  t.true(smmuEventsReport(`${line}\n`, ARM64_HOSTS[0]!).ok);
  t.false(smmuEventsReport('quiet\n', ARM64_HOSTS[0]!).ok);
  t.true(smmuEventsReport('quiet\n', ARM64_HOSTS[1]!).ok);
});

test("only the ITS boot runs the napi addon: Debian's Node comes read-only over 9p and its lines leave on a second virtio console", (t) => {
  t.deepEqual(ARM64_HOSTS.map((h) => h.napi), [true, false]);
  const args = qemuArgs(ARM64_HOSTS[0]!, { vmlinuz: 'k', initramfs: 'i', results: 'r', napi: { nodeRoot: '/cache/node-arm64', results: 'n' } }).join(' ');
  t.regex(args, /-fsdev local,id=noderoot,path=\/cache\/node-arm64,security_model=none,readonly=on/);
  t.regex(args, /virtio-9p-pci,fsdev=noderoot,mount_tag=noderoot,bus=pcie\.0,addr=0x9/);
  t.regex(args, /-chardev file,id=napi,path=n -device virtconsole,bus=vser\.0,chardev=napi/);
  t.notRegex(qemuArgs(ARM64_HOSTS[1]!, { vmlinuz: 'k', initramfs: 'i', results: 'r' }).join(' '), /9p|napi/);
});

test("the napi boot runs Debian's node at its own paths (linked into the 9p mount) on the solo edu, after the suite, and marks its exit", (t) => {
  const script = initScript([], ARM64_TOPOLOGY, true);
  const line = script.split('\n').find((l) => l.includes('/usr/bin/node'));
  t.is(line?.trim(), '/usr/bin/node /napi/lab/arm64/napi-cases.js /napi/vfio-core.linux-arm64-gnu.node kernel 0000:00:03.0 > /dev/hvc1');
  t.true(script.indexOf('run-exit') < script.indexOf('stage=napi'));
  t.regex(script, /mark "napi-exit=\$\?"/);
  t.notRegex(initScript([], ARM64_TOPOLOGY), /napi/);
});

test("napi-cases' output is read as its header, its case lines and whether it ended", async (t) => {
  const { parseNapiLines } = await import('./index');
  const text = '{"group":4,"bdf":"0000:00:03.0","arch":"arm64"}\n[  3.1] kernel noise\n{"case":"a","saw":{"ok":1}}\n{"end":"kernel"}\n';
  t.deepEqual(parseNapiLines(text), { header: { group: 4, bdf: '0000:00:03.0' }, cases: ['{"case":"a","saw":{"ok":1}}'], ended: true });
  t.deepEqual(parseNapiLines('{"case":"a","saw":{"ok":1}}\n'), { cases: ['{"case":"a","saw":{"ok":1}}'], ended: false });
});
