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
  t.regex(script, /insmod \/lib\/modules\/kernel\/drivers\/vfio\/vfio_iommu_type1\.ko dma_entry_limit=4096/);
  t.regex(script, /\/bin\/vfio-lab x86 --backend kernel --topology \/etc\/topology\.json --out \/dev\/hvc0/);
});

test('an SMMU event on the console is the refusal the ITS boot must show, and the GICv2 boot must not', async (t) => {
  const { smmuEventsReport } = await import('./index');
  const line = '[   10.1] arm-smmu-v3 9050000.smmuv3: event 0x10 received:';
  t.true(smmuEventsReport(`${line}\n`, ARM64_HOSTS[0]!).ok);
  t.false(smmuEventsReport('quiet\n', ARM64_HOSTS[0]!).ok);
  t.true(smmuEventsReport('quiet\n', ARM64_HOSTS[1]!).ok);
});
