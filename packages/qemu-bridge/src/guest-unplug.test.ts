// Hot-plug and unplug with a real Linux guest that answers (Debian's kernel
// on busybox, under TCG): the path where DEVICE_DELETED does arrive.
import test from 'ava';
import { startTestGuest } from '@vfiokit/testkit';
import { flattenPci, queryPci } from './commands/queries';
import { attachSlots, detachDevices, listRootPorts } from './hotplug/index';
import { connectQmp } from './qmp/transport';

test('a guest enumerates a two-function hot-plug and releases both functions on one unplug', async (t) => {
  t.timeout(240_000, 'a TCG boot on a busy machine');
  const guest = await startTestGuest({ args: ['-device', 'pcie-root-port,id=rp1,chassis=1,bus=pcie.0,addr=0x2'], bootTimeoutMs: 200_000 });
  try {
    const qmp = await connectQmp(guest.address, { commandTimeoutMs: 30_000 });
    try {
      const placed = await attachSlots(qmp, [
        [
          { id: 'f0', driver: 'e1000e', properties: {}, guestFunction: 0 },
          { id: 'f1', driver: 'e1000e', properties: {}, guestFunction: 1 },
        ],
      ]);
      t.deepEqual(placed, [
        { id: 'f1', rootPort: 'rp1', function: 1, guestVisible: true },
        { id: 'f0', rootPort: 'rp1', function: 0, guestVisible: true },
      ]);
      // The guest sees the slot once function 0 arrives and scans both functions.
      const deadline = Date.now() + 30_000;
      while (!/pci 0000:01:00\.1: \[8086:10d3\]/.test(guest.console()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
      }
      t.regex(guest.console(), /pci 0000:01:00\.0: \[8086:10d3\]/);
      t.regex(guest.console(), /pci 0000:01:00\.1: \[8086:10d3\]/);
      await detachDevices(qmp, ['f0', 'f1'], { timeoutMs: 30_000 });
      t.deepEqual((await listRootPorts(qmp)).map((p) => p.occupants), [[]]);
      t.false(flattenPci(await queryPci(qmp)).some((d) => d.qdevId === 'f0' || d.qdevId === 'f1'));
    } finally {
      await qmp.close();
    }
  } finally {
    await guest.stop();
  }
});
