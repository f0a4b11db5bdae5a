// The guest RAM layout of a running QEMU, in core's GuestMemoryLayout, for
// the DMA policy: what a "map all guest RAM" policy must map, and where.
import { validateLayout, type GuestMemoryLayout, type RamRegion } from '@vfiokit/core';
import { qomGet, queryMemoryDevices, queryMemorySizeSummary, type MemoryDevice } from '../commands/queries';
import { MemoryLayoutError, QmpCommandError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';

const GiB = 1n << 30n;
/** Where x86 RAM above the PCI hole starts (x86ms->above_4g_mem_start). */
const FOUR_GIB = 4n * GiB;
/**
 * AMD's HyperTransport hole starts here; since QEMU 7.1 an AMD vCPU whose
 * highest guest address would reach it gets its above-4G RAM moved to 1 TiB
 * (pc_memory_init(), AMD_HT_START). QMP does not tell the vCPU vendor.
 */
const AMD_HT_START = 0xfd00000000n;
/** q35's default 64-bit PCI hole (Q35_PCI_HOST_HOLE64_SIZE_DEFAULT). */
const Q35_HOLE64 = 32n * GiB;

export interface Q35RamSplit {
  readonly below4g: bigint;
  readonly above4g: bigint;
}

/**
 * QEMU's q35 rule (pc_q35_init()): below 4 GiB go up to 0xb0000000 (2.75 GiB)
 * when RAM is smaller than that, else 0x80000000 (2 GiB), so that 1 GiB
 * aligned guest addresses stay 1 GiB aligned on the host; `-machine
 * max-ram-below-4g=N` lowers that limit; the rest goes above 4 GiB.
 */
export function q35RamSplit(ramBytes: bigint, maxRamBelow4g: bigint = FOUR_GIB): Q35RamSplit {
  let lowmem = ramBytes >= 0xb0000000n ? 0x80000000n : 0xb0000000n;
  const limit = maxRamBelow4g === 0n ? FOUR_GIB : maxRamBelow4g;
  if (lowmem > limit) lowmem = limit;
  return ramBytes >= lowmem ? { below4g: lowmem, above4g: ramBytes - lowmem } : { below4g: ramBytes, above4g: 0n };
}

export type MachineFamily = 'q35' | 'pseries';

/** The machine family from the QOM type of /machine ('pc-q35-7.2-machine', 'pseries-7.2-machine'). */
export async function machineFamily(qmp: QmpExecutor): Promise<MachineFamily> {
  const type = String(await qomGet(qmp, '/machine', 'type'));
  if (/q35/.test(type)) return 'q35';
  if (/^pseries|spapr/.test(type)) return 'pseries';
  throw new MemoryLayoutError(`machine type ${type} is not q35 or pseries; vfiokit knows the RAM layout of those two only`);
}

/**
 * Reads the guest RAM layout: boot RAM as QEMU placed it (on q35 split
 * around the PCI hole, as the e820 table of pc_memory_init() tells the guest)
 * and memory devices at the addresses QEMU gave them.
 */
export async function readGuestMemoryLayout(qmp: QmpExecutor): Promise<GuestMemoryLayout> {
  const family = await machineFamily(qmp);
  const summary = await queryMemorySizeSummary(qmp);
  const devices = await queryMemoryDevices(qmp);
  const regions: RamRegion[] = [];
  if (family === 'q35') {
    const split = await readQ35Split(qmp, summary.baseMemory);
    const deviceEnd = devices.reduce((end, d) => (d.address + d.size > end ? d.address + d.size : end), 0n);
    const highEnd = FOUR_GIB + split.above4g;
    const top = (deviceEnd > highEnd ? deviceEnd : highEnd) + Q35_HOLE64;
    if (top >= AMD_HT_START) {
      throw new MemoryLayoutError(
        `this guest's memory reaches ${hexOf(top)} with its 64-bit PCI hole, past AMD's HyperTransport hole at ` +
          `${hexOf(AMD_HT_START)}: QEMU then moves RAM above 4 GiB to 1 TiB for an AMD vCPU, which QMP does not reveal; ` +
          `give the guest less memory or build the layout from the VM's configuration`,
      );
    }
    regions.push({ name: 'ram-below-4g', gpa: 0n, size: split.below4g, source: 'boot' });
    if (split.above4g > 0n) regions.push({ name: 'ram-above-4g', gpa: FOUR_GIB, size: split.above4g, source: 'boot' });
  } else {
    // sPAPR puts all boot RAM at 0 (spapr_machine_init()).
    regions.push({ name: 'ram', gpa: 0n, size: summary.baseMemory, source: 'boot' });
  }
  devices.forEach((d, i) => {
    const region = deviceRegion(d, i);
    if (region) regions.push(region);
  });
  regions.sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  try {
    return validateLayout({ regions });
  } catch (err) {
    throw new MemoryLayoutError(`QEMU reported a RAM layout vfiokit cannot use: ${(err as Error).message}`);
  }
}

async function readQ35Split(qmp: QmpExecutor, base: bigint): Promise<Q35RamSplit> {
  // pc_q35_init() hands its split to the host bridge as QOM properties; read
  // them, and fall back to the rule where a QEMU lacks them.
  let below: unknown;
  let above: unknown;
  try {
    below = await qomGet(qmp, '/machine/q35', 'below-4g-mem-size');
    above = await qomGet(qmp, '/machine/q35', 'above-4g-mem-size');
  } catch (err) {
    if (!(err instanceof QmpCommandError)) throw err;
    const limit = await qomGet(qmp, '/machine', 'max-ram-below-4g');
    return q35RamSplit(base, typeof limit === 'number' ? BigInt(limit) : FOUR_GIB);
  }
  if (typeof below !== 'number' || typeof above !== 'number' || !Number.isSafeInteger(below) || !Number.isSafeInteger(above)) {
    throw new MemoryLayoutError(`/machine/q35 reports below-4g-mem-size ${String(below)} and above-4g-mem-size ${String(above)}, not byte counts`);
  }
  const split = { below4g: BigInt(below), above4g: BigInt(above) };
  if (split.below4g + split.above4g !== base) {
    throw new MemoryLayoutError(
      `/machine/q35 splits RAM as ${hexOf(split.below4g)} + ${hexOf(split.above4g)}, but base memory is ${hexOf(base)}`,
    );
  }
  return split;
}

function deviceRegion(d: MemoryDevice, index: number): RamRegion | null {
  const name = d.id ?? `${d.kind}${index}`;
  switch (d.kind) {
    case 'dimm':
    case 'nvdimm':
    case 'virtio-pmem':
      return { name, gpa: d.address, size: d.size, source: 'hotplug' };
    case 'sgx-epc':
      // Enclave page cache: no device may DMA into it, and VFIO does not map it.
      return null;
    case 'virtio-mem':
      if (d.pluggedSize === 0n) return null;
      throw new MemoryLayoutError(
        `virtio-mem ${name} has ${hexOf(d.pluggedSize ?? 0n)} plugged in ${hexOf(d.size)} at ${hexOf(d.address)}, ` +
          `but QMP does not say which blocks: unplug it to 0 or use DIMMs for a VM with assigned devices`,
      );
    default:
      throw new MemoryLayoutError(`memory device ${name} is of kind ${d.kind as string}, which vfiokit does not know`);
  }
}

function hexOf(n: bigint): string {
  return '0x' + n.toString(16);
}
