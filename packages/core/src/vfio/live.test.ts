// Live update from TypeScript, on the mock: what a hand-over refuses up
// front, that a failed one leaves every mapping with this process's
// address, and that guest memory (a memfd) is released by collection. The
// hand-over between processes on the kernel is the lab's (live.lab.ts).
import test from 'ava';
import * as fs from 'node:fs';
import { GuestMemory, HostMemory, packTriples, VfioError, VfioHost } from './index';
import { collect, openFds } from './collect.test-support';
import { outcome } from './lab/support';

const MB = 1n << 20n;

test('guest memory is a memfd this process maps shared, read back as written', (t) => {
  const m = new GuestMemory(3 * 4096 + 1);
  t.is(m.size, 4 * 4096);
  t.regex(fs.readlinkSync(`/proc/self/fd/${m.fd}`), /^\/memfd:vfiokit-guest-ram/);
  m.write(8192, Buffer.from('guest ram'));
  t.is(m.read(8192, 9).toString(), 'guest ram');
  t.is(Number(m.address % 4096n), 0);
});

test('a hand-over of a mapping outside the guest memory is refused with EINVAL and changes nothing', async (t) => {
  const c = VfioHost.mock().openType1([1]);
  const ram = new GuestMemory(Number(4n * MB));
  const anon = new HostMemory(4096);
  c.mapDma(0x1000000n, anon.address, 0x1000n);
  const e = await t.throwsAsync(c.handOver(99, ram, packTriples([[0x1000000n, anon.address, 0x1000n]])), { instanceOf: VfioError });
  t.is(e?.code, 'EINVAL');
  t.regex(String(e?.message), /not inside the shared guest memory/);
  // Still valid: an update is refused as for any valid mapping.
  t.is(outcome(() => c.updateVaddr(0x1000000n, anon.address, 0x1000n)), 'EINVAL');
});

test('a hand-over whose socket is not open rejects with EBADF and every mapping has this process address again', async (t) => {
  const c = VfioHost.mock().openType1([1]);
  const ram = new GuestMemory(Number(4n * MB));
  const maps: [bigint, bigint, bigint][] = [0n, 1n, 2n, 3n].map((i) => [0x1000000n + i * MB, ram.address + i * MB, MB]);
  // Alternating permissions keep the four from coalescing into one mapping:
  // a hand-over describes mappings exactly as the kernel holds them.
  c.mapBatch(packTriples(maps), new Uint32Array([3, 1, 3, 1]));
  const e = await t.throwsAsync(c.handOver(-1, ram, packTriples(maps)), { instanceOf: VfioError });
  t.is(e?.code, 'EBADF');
  for (const [iova, , size] of maps) t.is(c.invalidateVaddr(iova, size), size);
});

test.serial('a thousand refused hand-overs and two thousand guest memories, collected, leave no descriptor behind', async (t) => {
  const c = VfioHost.mock().openType1([1]);
  const anon = new HostMemory(4096);
  c.mapDma(0x1000000n, anon.address, 0x1000n);
  const triples = packTriples([[0x1000000n, anon.address, 0x1000n]]);
  const round = async () => {
    for (let i = 0; i < 1000; i++) {
      const ram = new GuestMemory(8192);
      ram.write(0, Buffer.from([i & 0xff]));
      if (i % 2 === 0) await t.throwsAsync(c.handOver(-1, ram, triples));
      if (i % 200 === 199) await collect();
    }
    await collect();
    return openFds();
  };
  // Compared between two rounds of a thousand, not with the start: the
  // last guest memory of a round may still be reachable from its settled
  // promise, and libuv opens its pool's descriptors on first use.
  const first = await round();
  const second = await round();
  t.true(second <= first, `${second} descriptors open after the second thousand, ${first} after the first`);
  t.is(c.iommuInfo().dmaAvail, 65534);
});
