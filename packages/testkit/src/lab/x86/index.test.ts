import test from 'ava';
import { consoleReports } from './index';

const fault = '[    3.7] DMAR: [DMA Write NO_PASID] Request device [02:00.0] fault addr 0x200000 [fault reason 0x05] PTE Write access is not set';

test('a clean console with the expected DMAR faults passes both verdicts', (t) => {
  t.deepEqual(
    consoleReports(`[    1.0] booting\n${fault}\n`).map((r) => r.ok),
    [true, true],
  );
});

test('a WARNING on the console fails the first verdict and quotes the line', (t) => {
  const [noOops] = consoleReports(`[    2.0] WARNING: CPU: 0 PID: 1 at drivers/vfio/vfio_main.c:1 x\n${fault}\n`);
  t.false(noOops!.ok);
  t.deepEqual(noOops!.detail, ['[    2.0] WARNING: CPU: 0 PID: 1 at drivers/vfio/vfio_main.c:1 x']);
});

test('no DMAR fault at all fails the second verdict: a refused DMA must fault', (t) => {
  const [, faults] = consoleReports('[    1.0] booting\n');
  t.false(faults!.ok);
});

test('on a host without interrupt remapping no IOMMU fault is the verdict: no container got an IOMMU, so no DMA ran', async (t) => {
  const { X86_HOSTS } = await import('./hosts');
  const noir = X86_HOSTS.find((h) => h.name === 'x86-noir')!;
  const [, quiet] = consoleReports('[    1.0] booting\n', noir);
  t.true(quiet!.ok);
  t.false(consoleReports(`${fault}\n`, noir)[1]!.ok);
});

test("AMD-Vi's IO_PAGE_FAULT lines count as the IOMMU's refusals on the x86-amd host", async (t) => {
  const { X86_HOSTS } = await import('./hosts');
  const amd = X86_HOSTS.find((h) => h.name === 'x86-amd')!;
  const line = '[    9.1] vfio-pci 0000:00:03.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0001 address=0x200000 flags=0x0020]';
  t.true(consoleReports(`${line}\n`, amd)[1]!.ok);
});

test('every x86 host names the mock profile it is compared with, and the variant boots set the parameters they claim', async (t) => {
  const { X86_HOSTS } = await import('./hosts');
  t.deepEqual(
    X86_HOSTS.map((h) => [h.name, h.facts.iommu, h.facts.msiIsolated, h.type1Params.join(' '), /intremap=off/.test(h.kernelArgs)]),
    [
      ['x86', 'vtd', true, '', false],
      ['x86-amd', 'amd-vi', true, '', false],
      ['x86-noir', 'vtd', false, '', true],
      ['x86-noir-unsafe', 'vtd', false, 'allow_unsafe_interrupts=1', true],
    ],
  );
});
