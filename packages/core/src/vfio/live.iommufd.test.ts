// The iommufd live hand-over from TypeScript (IommufdSpace.mapFile and
// handOver, VfioHost.takeOverIommufd), on vfio-core's mock: what is refused
// up front and leaves everything as it was, and what each side does when the
// other fails, between two node processes. The mock's descriptors are
// entries of its own table, not the process's, so on the mock no hand-over
// gets past SCM_RIGHTS and no take-over of real descriptors gets past
// IOMMU_IOAS_CHANGE_PROCESS; the hand-over that succeeds, with a new process
// killed and the old one killed, is the lab's (live.iommufd-lab.ts, on 7.2).
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { sendWithFds } from '../fdpass';
import { GuestMemory, HostMemory, VfioError, VfioHost } from './index';
import { collect, openFds } from './collect.test-support';
import { mockIommufdHost } from './lab/live-iommufd-child';

const IOVA0 = 0x1000000n;
const PAGE = 4096n;

function fdList(): string {
  return fs
    .readdirSync('/proc/self/fd')
    .map((f) => {
      try {
        return `${f}=${fs.readlinkSync(`/proc/self/fd/${f}`)}`;
      } catch {
        return f;
      }
    })
    .join(' ');
}

/** iova, offset, size triples of `pages` one-page MAP_FILE mappings of `memory`. */
function mapPages(space: ReturnType<VfioHost['openIommufd']>, memory: GuestMemory, pages: number): BigUint64Array {
  const out = new BigUint64Array(pages * 3);
  for (let i = 0; i < pages; i++) {
    const iova = space.mapFile(IOVA0 + BigInt(i) * PAGE, memory, BigInt(i) * PAGE, PAGE);
    out.set([iova, BigInt(i) * PAGE, PAGE], i * 3);
  }
  return out;
}

const child = path.join(__dirname, 'lab', 'live-iommufd-child.ts');

function start(role: string, stdio: ('ignore' | 'pipe' | net.Socket)[]): ChildProcess {
  return spawn(process.execPath, ['--expose-gc', '-r', 'ts-node/register', child, role], { stdio });
}

/** The one JSON line a child prints, and its exit. */
function result(p: ChildProcess): Promise<{ out: Record<string, unknown>; exit: string }> {
  let stdout = '';
  let stderr = '';
  p.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) =>
    p.once('exit', (code, signal) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      if (!line.startsWith('{')) reject(new Error(`the child printed no result (exit ${signal ?? code}): ${stderr}`));
      else resolve({ out: JSON.parse(line) as Record<string, unknown>, exit: String(signal ?? code) });
    }),
  );
}

test('mapFile maps a guest memory by file offset at the IOVA asked for, or where the kernel chooses, and unmaps like any mapping', (t) => {
  const space = mockIommufdHost().openIommufd([0]);
  const memory = new GuestMemory(4 * 4096);
  t.is(space.mapFile(IOVA0, memory, 0n, 2n * PAGE), IOVA0);
  const chosen = space.mapFile(null, memory, 2n * PAGE, 2n * PAGE);
  t.is(chosen % PAGE, 0n);
  t.is(space.unmapDma(IOVA0, 2n * PAGE), 2n * PAGE);
  t.is(space.unmapAll(), 2n * PAGE);
});

test('mapFile past the end of the memory fails with EINVAL naming the memfd and the range', (t) => {
  const space = mockIommufdHost().openIommufd([0]);
  const memory = new GuestMemory(4096);
  const e = t.throws(() => space.mapFile(IOVA0, memory, 0n, 2n * PAGE), { instanceOf: VfioError });
  t.is(e?.code, 'EINVAL');
  t.is(e?.ioctl, 'IOMMU_IOAS_MAP_FILE');
  t.regex(String(e?.message), /memfd \d+ start 0x0 size 0x2000/);
  t.is(space.unmapAll(), 0n);
});

test('on a 6.12 kernel mapFile and handOver are refused with ENOTTY naming Linux 6.13, and nothing changes', async (t) => {
  const space = mockIommufdHost('6.12').openIommufd([0]);
  const memory = new GuestMemory(4096);
  const m = t.throws(() => space.mapFile(IOVA0, memory, 0n, PAGE), { instanceOf: VfioError });
  t.is(m?.code, 'ENOTTY');
  t.regex(String(m?.message), /Linux 6\.13/);
  const anon = new HostMemory(4096);
  space.mapDma(IOVA0, anon.address, PAGE);
  const h = await t.throwsAsync(space.handOver(99, memory, new BigUint64Array(0)), { instanceOf: VfioError });
  t.is(h?.code, 'ENOTTY');
  t.is(h?.ioctl, 'IOMMU_IOAS_CHANGE_PROCESS');
  t.regex(String(h?.message), /Linux 6\.13.*nothing was sent/);
  t.is(space.unmapDma(IOVA0, PAGE), PAGE);
});

test('a hand-over while a mapping was made from addresses is refused with EINVAL before anything is sent', async (t) => {
  const space = mockIommufdHost().openIommufd([0]);
  const memory = new GuestMemory(4 * 4096);
  const maps = mapPages(space, memory, 2);
  const anon = new HostMemory(4096);
  space.mapDma(0x4000000n, anon.address, PAGE);
  const e = await t.throwsAsync(space.handOver(99, memory, maps), { instanceOf: VfioError });
  t.is(e?.code, 'EINVAL');
  t.is(e?.ioctl, 'IOMMU_IOAS_CHANGE_PROCESS');
  t.regex(String(e?.message), /only IOMMU_IOAS_MAP_FILE mappings can move.*nothing was sent/);
  t.is(space.unmapAll(), 3n * PAGE);
});

test('bad hand-over arguments are refused naming what is wrong: triples not in threes, a mapping outside the memory, overlapping ones, a closed space', async (t) => {
  const space = mockIommufdHost().openIommufd([0]);
  const memory = new GuestMemory(2 * 4096);
  const maps = mapPages(space, memory, 2);
  const notThree = t.throws(() => space.handOver(99, memory, new BigUint64Array(4)), { instanceOf: VfioError });
  t.regex(String(notThree?.message), /4 values, not a multiple of 3 \(iova, offset, size\)/);
  const outside = await t.throwsAsync(space.handOver(99, memory, new BigUint64Array([IOVA0, 2n * PAGE, PAGE])), { instanceOf: VfioError });
  t.is(outside?.code, 'EINVAL');
  t.regex(String(outside?.message), /runs past the guest memory/);
  const overlap = await t.throwsAsync(space.handOver(99, memory, new BigUint64Array([IOVA0, 0n, 2n * PAGE, IOVA0 + PAGE, PAGE, PAGE])), { instanceOf: VfioError });
  t.regex(String(overlap?.message), /overlap/);
  t.is(space.unmapDma(maps[0]!, 2n * PAGE), 2n * PAGE);
  space.close();
  const closed = await t.throwsAsync(space.handOver(99, memory, new BigUint64Array(0)), { instanceOf: VfioError });
  t.is(closed?.code, 'EBADF');
  t.regex(String(closed?.message), /closed/);
});

test('between two node processes on the mock: the old one stops at SCM_RIGHTS with EBADF keeping every mapping, the new one rejects when the socket closes mid-description, and neither keeps a descriptor', async (t) => {
  t.timeout(170_000);
  const oldP = start('old-mock', ['ignore', 'pipe', 'pipe', 'pipe']);
  const newP = start('new-mock', ['ignore', 'pipe', 'pipe', oldP.stdio[3] as net.Socket]);
  (oldP.stdio[3] as net.Socket).destroy();
  try {
    const [o, n] = await Promise.all([result(oldP), result(newP)]);
    t.is(o.exit, '0');
    t.is(o.out.code, 'EBADF', JSON.stringify(o.out));
    t.is(o.out.unmapped, String(4n * PAGE));
    t.is(o.out.fdsAfter, o.out.fdsBefore);
    t.is(n.exit, '0');
    t.is(n.out.code, 'EPROTO', JSON.stringify(n.out));
    t.regex(String(n.out.message), /closed the socket after \d+ bytes and 0 descriptors/);
    t.is(n.out.fdsAfter, n.out.fdsBefore);
  } finally {
    oldP.kill('SIGKILL');
    newP.kill('SIGKILL');
  }
});

/**
 * What an old process sends: the description, then its descriptors on a
 * one-byte message (crates/vfio-core/src/live/wire.rs). The "iommufd" and
 * the "device" are memfds here, real descriptors the mock never made.
 */
function sendHandover(socketFd: number, memory: GuestMemory, device = 'vfio0'): void {
  const text =
    `vfiokit-live-update 1\niommufd 1\ndevice ${device}\nmemory 0x${memory.size.toString(16)}\n` +
    `map 0x${IOVA0.toString(16)} 0x${memory.size.toString(16)} 0x0\nend\n`;
  fs.writeSync(socketFd, text);
  sendWithFds(socketFd, Buffer.from('.'), [memory.fd, memory.fd, memory.fd]);
}

/** The new side's one answer line on the socket. */
function answerOn(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\n')) resolve(got.split('\n')[0]!);
    });
    s.on('close', () => resolve(got));
  });
}

function fdOf(s: net.Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

test('a new process whose CHANGE_PROCESS fails answers failed with the reason and closes every descriptor it received', async (t) => {
  t.timeout(170_000);
  const newP = start('new-mock', ['ignore', 'pipe', 'pipe', 'pipe']);
  try {
    const s = newP.stdio[3] as net.Socket;
    const memory = new GuestMemory(4 * 4096);
    sendHandover(fdOf(s), memory);
    const answer = answerOn(s);
    const n = await result(newP);
    t.regex(await answer, /^failed IOMMU_IOAS_CHANGE_PROCESS .*EBADF/);
    t.is(n.out.code, 'EBADF', JSON.stringify(n.out));
    t.is(n.out.fdsAfter, n.out.fdsBefore);
  } finally {
    newP.kill('SIGKILL');
  }
});

test('a new process sent a device that is not a cdev answers failed naming it, before any charge moves', async (t) => {
  t.timeout(170_000);
  const newP = start('new-mock', ['ignore', 'pipe', 'pipe', 'pipe']);
  try {
    const s = newP.stdio[3] as net.Socket;
    const memory = new GuestMemory(4096);
    sendHandover(fdOf(s), memory, '0000:00:03.0');
    const answer = answerOn(s);
    const n = await result(newP);
    t.regex(await answer, /^failed .*device 0000:00:03\.0.*not a cdev/);
    t.is(n.out.code, 'EPROTO', JSON.stringify(n.out));
    t.is(n.out.fdsAfter, n.out.fdsBefore);
  } finally {
    newP.kill('SIGKILL');
  }
});

test('a take-over of a type1 hand-over is refused naming takeOver, and answers the old process', async (t) => {
  t.timeout(170_000);
  const newP = start('new-mock', ['ignore', 'pipe', 'pipe', 'pipe']);
  try {
    const s = newP.stdio[3] as net.Socket;
    const memory = new GuestMemory(4096);
    fs.writeSync(fdOf(s), `vfiokit-live-update 1\ncontainer\ngroup 1\nmemory 0x1000\nend\n`);
    sendWithFds(fdOf(s), Buffer.from('.'), [memory.fd, memory.fd, memory.fd]);
    const answer = answerOn(s);
    const n = await result(newP);
    t.regex(await answer, /^failed .*type1 container/, JSON.stringify(n.out));
    t.is(n.out.code, 'EPROTO', JSON.stringify(n.out));
    t.is(n.out.fdsAfter, n.out.fdsBefore);
  } finally {
    newP.kill('SIGKILL');
  }
});

/** Both ends of one connected UNIX socket in this process: an abstract name (nothing on disk), the accepting end never read by libuv. */
async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const server = net.createServer({ pauseOnConnect: true });
  const name = `\0vfiokit-live-iommufd-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await new Promise<void>((r) => server.listen(name, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect(name);
  await new Promise<void>((r) => a.once('connect', r));
  const b = await accepted;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

test.serial('a thousand refused hand-overs, take-overs and file mappings, collected, leave no descriptor behind', async (t) => {
  t.timeout(170_000);
  const space = mockIommufdHost().openIommufd([0]);
  const old612 = mockIommufdHost('6.12').openIommufd([0]);
  const host = mockIommufdHost();
  const anon = new HostMemory(4096);
  const round = async () => {
    for (let i = 0; i < 1000; i++) {
      const memory = new GuestMemory(2 * 4096);
      const maps = mapPages(space, memory, 2);
      // No socket: the checks pass (the mock's CHANGE_PROCESS), the send fails.
      await t.throwsAsync(space.handOver(-1, memory, maps), { code: 'EBADF' });
      if (i % 3 === 0) {
        space.mapDma(0x4000000n, anon.address, PAGE);
        await t.throwsAsync(space.handOver(-1, memory, maps), { code: 'EINVAL' });
        space.unmapDma(0x4000000n, PAGE);
      }
      if (i % 3 === 1) await t.throwsAsync(old612.handOver(-1, memory, new BigUint64Array(0)), { code: 'ENOTTY' });
      t.is(space.unmapAll(), 2n * PAGE);
      // Every tenth round a take-over of three real descriptors the mock
      // never made: adopted, refused at CHANGE_PROCESS, all closed again.
      if (i % 10 === 0) {
        const p = await socketPair();
        sendHandover(fdOf(p.a), memory);
        await t.throwsAsync(host.takeOverIommufd(fdOf(p.b)), { code: 'EBADF' });
        p.close();
      }
      if (i % 200 === 199) await collect();
    }
    // The last guest memory may still be reachable from the last settled
    // promise's task until the loop has turned a few times.
    for (let k = 0; k < 3; k++) await collect();
    return { count: openFds(), list: fdList() };
  };
  // Compared between rounds, not with the start: libuv opens its pool's
  // descriptors on first use, and the last guest memory of a round may
  // still be reachable (seen: from the second round on, one memfd, the
  // last round's). A descriptor kept per call would add hundreds.
  await round();
  const second = await round();
  const third = await round();
  t.true(third.count <= second.count, `after the third thousand: ${third.list}; after the second: ${second.list}`);
});
