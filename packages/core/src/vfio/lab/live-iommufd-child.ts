// The two sides of an iommufd live hand-over through @vfiokit/core's API
// (IommufdSpace.handOver, VfioHost.takeOverIommufd), each a node process
// whose fd 3 is one end of a UNIX socketpair (the parent passes one child's
// stdio pipe to the other). Run on vfio-core's mock by live.iommufd.test.ts:
//
//   node --expose-gc live-iommufd-child.js old-mock
//   node --expose-gc live-iommufd-child.js new-mock
//
// and on the lab's kernel (Linux 6.13 or later) by live.iommufd-lab.ts,
// with edu's DMA landing before, during and after:
//
//   node --expose-gc live-iommufd-child.js old BDF
//   node --expose-gc live-iommufd-child.js new       (or new-dies)
//
// Each prints JSON lines on stdout; `new` waits for `go` on stdin (sent once
// the old process is killed) before it drives edu's DMA itself.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { collect, openFds } from '../collect.test-support';
import { GuestMemory, PciRegion, VfioError, VfioHost } from '../index';
import { copyInto, dmaAround, dmaBefore, IOVA0, PAGES, say, SOCKET_FD, untilGo } from './live-child';

/** The mock's hand-over maps a few pages; the lab's all of PAGES. */
const MOCK_PAGES = 4;

/** The mock host of live.iommufd.test.ts: one edu behind an iommufd, a 7.2 kernel. */
export function mockIommufdHost(kernel?: '6.12'): VfioHost {
  return VfioHost.mock({ iommufd: true, kernel, groups: [{ id: 1, devices: [{ address: '0000:00:03.0', driver: 'vfio-pci' }] }] });
}

/**
 * The old side on the mock: four MAP_FILE mappings, then a hand-over. The
 * mock's descriptors are entries of its own table, not the process's, so
 * the send stops at SCM_RIGHTS (EBADF) after the description went out; the
 * mappings must be this process's as before.
 */
async function oldMock(): Promise<void> {
  const space = mockIommufdHost().openIommufd([0]);
  const memory = new GuestMemory(MOCK_PAGES * 4096);
  const maps = new BigUint64Array(MOCK_PAGES * 3);
  for (let i = 0; i < MOCK_PAGES; i++) {
    const iova = space.mapFile(IOVA0 + BigInt(i) * 4096n, memory, BigInt(i) * 4096n, 4096n);
    maps.set([iova, BigInt(i) * 4096n, 4096n], i * 3);
  }
  const before = openFds();
  let code: string | undefined;
  let message = '';
  try {
    await space.handOver(SOCKET_FD, memory, maps);
  } catch (e) {
    code = (e as VfioError).code;
    message = (e as VfioError).message;
  }
  const unmapped = String(space.unmapDma(IOVA0, BigInt(MOCK_PAGES) * 4096n));
  say({ role: 'old', code, message, unmapped, fdsBefore: before, fdsAfter: openFds() });
  space.close();
}

/** The new side on the mock: whatever arrives, nothing it received may stay open. */
async function newMock(): Promise<void> {
  const before = openFds();
  let code: string | undefined;
  let message = '';
  try {
    await mockIommufdHost().takeOverIommufd(SOCKET_FD);
  } catch (e) {
    code = (e as VfioError).code;
    message = (e as VfioError).message;
  }
  say({ role: 'new', code, message, fdsBefore: before, fdsAfter: openFds() });
}

/** kB of a /proc/PID/status line (VmPin: the pages iommufd pinned for this process). */
function statusKb(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : -1;
}

/**
 * The old side on the kernel: edu bound through its cdev, PAGES one-page
 * MAP_FILE mappings of a memfd, edu copying into them before, during (the
 * hand-over runs on libuv's pool; the BAR mapping needs no lock the
 * hand-over holds) and after the hand-over. Before 6.13 the first mapFile
 * is refused: it says so and ends.
 */
async function old(bdf: string): Promise<void> {
  const name = fs.readdirSync(`/sys/bus/pci/devices/${bdf}/vfio-dev`).find((n) => /^vfio\d+$/.test(n));
  if (!name) throw new Error(`${bdf} has no vfio-dev/vfioN: is it bound to vfio-pci on a kernel with VFIO_DEVICE_CDEV?`);
  const cdev = Number(name.slice(4));
  const space = VfioHost.kernel().openIommufd([cdev]);
  space.writeConfig16(cdev, 4, space.readConfig16(cdev, 4) | 0x6);
  const memory = new GuestMemory(PAGES * 4096);
  const maps = new BigUint64Array(PAGES * 3);
  try {
    for (let i = 0; i < PAGES; i++) {
      const iova = space.mapFile(IOVA0 + BigInt(i) * 4096n, memory, BigInt(i) * 4096n, 4096n);
      maps.set([iova, BigInt(i) * 4096n, 4096n], i * 3);
    }
  } catch (e) {
    say({ role: 'old', refused: (e as VfioError).code, message: (e as VfioError).message });
    return;
  }
  const bar0 = space.mapRegion(cdev, PciRegion.Bar0, 0, 4096);
  const before = await dmaBefore(bar0, memory);
  const vmpinBefore = statusKb('VmPin');
  // The BAR mapping takes no lock the hand-over holds: edu copies throughout.
  // A rejection (the new process gone before the descriptors were sent) is
  // reported as an outcome: this process keeps everything either way.
  const handOver = () => space.handOver(SOCKET_FD, memory, maps).catch((e: VfioError) => ({ rejected: e.code, message: e.message }));
  const { outcome, landed, missed, during, duringMissed } = await dmaAround(bar0, memory, before, handOver);
  say({ role: 'old', cdev, outcome, landed, missed, during, duringMissed, vmpinBefore, vmpinAfter: statusKb('VmPin') });
  // Wait to be killed: the parent sends SIGKILL, as an upgrade would end it.
  setInterval(() => undefined, 1000);
}

/** The new side on the kernel: takes over, then after `go` (the old one is dead) drives edu through the same mappings and unmaps them. */
async function takeOver(): Promise<void> {
  const taken = await VfioHost.kernel().takeOverIommufd(SOCKET_FD);
  const space = taken.space;
  say({ role: 'new', taken: true, cdevs: space.cdevs, mappings: taken.mappings.length / 3, vmpin: statusKb('VmPin') });
  await untilGo();
  // The old process is dead: only this one's handles keep everything open.
  await collect();
  const cdev = space.cdevs[0]!;
  const bar0 = space.mapRegion(cdev, PciRegion.Bar0, 0, 4096);
  let landed = 0;
  let missed = 0;
  for (let k = 0; k < 20; k++) {
    (await copyInto(bar0, taken.memory, k * 7)) ? landed++ : missed++;
    if (k % 5 === 4) await collect();
  }
  const vmpin = statusKb('VmPin');
  const unmapped = space.unmapAll();
  const afterUnmap = await copyInto(bar0, taken.memory, 3);
  say({ role: 'new', landed, missed, vmpin, unmapped: String(unmapped), afterUnmap, vmpinAfterUnmap: statusKb('VmPin') });
  space.close();
}

/** A new process that dies mid-way: it says when the hand-over starts arriving, then waits to be killed without taking over. */
function dieOnArrival(): void {
  const s = new net.Socket({ fd: SOCKET_FD, readable: true, writable: false });
  s.once('data', () => say({ role: 'new', arrived: true }));
  setInterval(() => undefined, 1000);
}

if (require.main === module) {
  const roles: Record<string, () => Promise<void>> = {
    'old-mock': oldMock,
    'new-mock': newMock,
    old: () => old(process.argv[3] ?? ''),
    new: takeOver,
    'new-dies': async () => dieOnArrival(),
  };
  const run = roles[process.argv[2] ?? ''];
  if (!run) {
    process.stderr.write(`usage: live-iommufd-child.js ${Object.keys(roles).join('|')}\n`);
    process.exit(2);
  }
  run().catch((e) => {
    process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n');
    process.exit(1);
  });
}
