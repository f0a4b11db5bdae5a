// The two sides of a live hand-over through @vfiokit/core's API, run by
// live.lab.ts in the lab guest as `node --expose-gc live-child.js old BDF`
// and `node --expose-gc live-child.js new`, their fd 3 the two ends of one
// UNIX socketpair (the parent passes one child's stdio pipe to the other).
// Each prints JSON lines on stdout; `new` waits for `go` on stdin (sent once
// the old process is killed) before it drives edu's DMA itself. The edu
// helpers serve live-iommufd-child.ts too.
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { collect } from '../collect.test-support';
import { GuestMemory, packTriples, PciRegion, VfioHost, type Device } from '../index';

export const SOCKET_FD = 3;
export const PAGES = 64;
export const IOVA0 = 0x1000000n;
const LEN = 4095; // QEMU 7.2's edu refuses 4096 bytes into its buffer
export const PATTERN = Buffer.from(Array.from({ length: LEN }, (_, i) => (i * 13 + 5) & 0xff));

export type Bar0 = ReturnType<Device['mapRegion']>;

export function say(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

/** edu (hw/misc/edu.c): one DMA, waiting for the engine to go idle before and after. */
export async function eduDma(bar0: Bar0, src: bigint, dst: bigint, toRam: boolean): Promise<void> {
  const idle = async () => {
    for (let i = 0; i < 20000; i++) {
      if ((bar0.read32(0x98) & 1) === 0) return;
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new Error('edu DMA did not finish');
  };
  await idle();
  bar0.write64(0x80, src);
  bar0.write64(0x88, dst);
  bar0.write32(0x90, LEN);
  bar0.write32(0x98, 1 | (toRam ? 2 : 0));
  await idle();
}

/** Copies edu's buffer into page 1 + k % (PAGES - 1) and says whether the pattern landed. */
export async function copyInto(bar0: Bar0, memory: GuestMemory, k: number): Promise<boolean> {
  const page = 1 + (k % (PAGES - 1));
  memory.write(page * 4096, Buffer.alloc(LEN));
  await eduDma(bar0, 0x40000n, IOVA0 + BigInt(page) * 4096n, true);
  return memory.read(page * 4096, LEN).equals(PATTERN);
}

/** Seeds edu's buffer from page 0, then five copies: the DMA before a hand-over. */
export async function dmaBefore(bar0: Bar0, memory: GuestMemory): Promise<{ landed: number; missed: number }> {
  memory.write(0, PATTERN);
  await eduDma(bar0, IOVA0, 0x40000n, false);
  let landed = 0;
  let missed = 0;
  for (let k = 0; k < 5; k++) (await copyInto(bar0, memory, k)) ? landed++ : missed++;
  await collect();
  return { landed, missed };
}

/**
 * Starts the hand-over `handOver` (it runs off the event loop) and keeps
 * edu copying until it settles, then three copies more: the DMA during and
 * after, added to `before`'s counts.
 */
export async function dmaAround<T>(
  bar0: Bar0,
  memory: GuestMemory,
  before: { landed: number; missed: number },
  handOver: () => Promise<T>,
): Promise<{ outcome: T; landed: number; missed: number; during: number; duringMissed: number }> {
  let { landed, missed } = before;
  let during = 0;
  let duringMissed = 0;
  let settled = false;
  const handing = handOver().finally(() => {
    settled = true;
  });
  for (let k = 5; !settled; k++) (await copyInto(bar0, memory, k)) ? during++ : duringMissed++;
  const outcome = await handing;
  for (let k = 0; k < 3; k++) (await copyInto(bar0, memory, k)) ? landed++ : missed++;
  return { outcome, landed, missed, during, duringMissed };
}

/** Waits for the parent's `go` line on stdin. */
export async function untilGo(): Promise<void> {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) if (line === 'go') break;
  lines.close();
}

async function old(bdf: string): Promise<void> {
  const group = Number(fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop());
  const container = VfioHost.kernel().openType1([group]);
  const device = container.device(bdf);
  device.writeConfig16(4, device.readConfig16(4) | 0x6);
  const memory = new GuestMemory(PAGES * 4096);
  const maps: [bigint, bigint, bigint][] = [];
  for (let i = 0; i < PAGES; i++) {
    maps.push([IOVA0 + BigInt(i) * 4096n, memory.address + BigInt(i) * 4096n, 4096n]);
    container.mapDma(...maps[i]);
  }
  const bar0 = device.mapRegion(PciRegion.Bar0, 0, 4096);
  const before = await dmaBefore(bar0, memory);
  const { outcome, landed, missed, during, duringMissed } = await dmaAround(bar0, memory, before, () => container.handOver(SOCKET_FD, memory, packTriples(maps)));
  say({ role: 'old', outcome, landed, missed, during, duringMissed });
  // Wait to be killed: the parent sends SIGKILL, as an upgrade would end it.
  setInterval(() => undefined, 1000);
}

async function takeOver(): Promise<void> {
  const taken = await VfioHost.kernel().takeOver(SOCKET_FD);
  say({ role: 'new', taken: true, devices: taken.devices.map((d) => d.name) });
  await untilGo();
  // The old process is dead: only this one's handles keep everything open.
  await collect();
  const device = taken.devices[0];
  const bar0 = device.mapRegion(PciRegion.Bar0, 0, 4096);
  let landed = 0;
  let missed = 0;
  for (let k = 0; k < 20; k++) {
    (await copyInto(bar0, taken.memory, k * 7)) ? landed++ : missed++;
    if (k % 5 === 4) await collect();
  }
  const unmapped = taken.container.unmapAll();
  const afterUnmap = await copyInto(bar0, taken.memory, 3);
  say({ role: 'new', landed, missed, unmapped: String(unmapped), afterUnmap });
  taken.container.close();
}

if (require.main === module) {
  const run = process.argv[2] === 'old' ? old(process.argv[3] ?? '') : takeOver();
  run.catch((e) => {
    process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n');
    process.exit(1);
  });
}
