// The two sides of an iommufd live hand-over through @vfiokit/core's API
// (IommufdSpace.handOver, VfioHost.takeOverIommufd), each a node process
// whose fd 3 is one end of a UNIX socketpair (the parent passes one child's
// stdio pipe to the other). Run on vfio-core's mock by live.iommufd.test.ts:
//
//   node --expose-gc live-iommufd-child.js old-mock
//   node --expose-gc live-iommufd-child.js new-mock
//
// Each prints one JSON line on stdout.
import * as fs from 'node:fs';
import { GuestMemory, VfioError, VfioHost } from '../index';

const SOCKET_FD = 3;
const IOVA0 = 0x1000000n;
const PAGES = 4;

function say(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

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
  const memory = new GuestMemory(PAGES * 4096);
  const maps = new BigUint64Array(PAGES * 3);
  for (let i = 0; i < PAGES; i++) {
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
  const unmapped = String(space.unmapDma(IOVA0, BigInt(PAGES) * 4096n));
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

if (require.main === module) {
  const roles: Record<string, () => Promise<void>> = { 'old-mock': oldMock, 'new-mock': newMock };
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
