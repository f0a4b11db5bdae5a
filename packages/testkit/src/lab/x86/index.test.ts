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
