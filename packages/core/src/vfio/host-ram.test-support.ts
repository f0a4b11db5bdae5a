import { HostMemory } from './index';

const GiB = 1n << 30n;
/** Exported so the module's exports hold it: a module-level const nobody
 * reads after load may be collected, and its memory unmapped with it. */
export const HOST_RAM_REGION = HostMemory.reserve(65n << 30n);

/**
 * The base (1 GiB aligned) of 64 GiB of reserved address space of this
 * process: tests place their guest RAM and host buffers in it, because a
 * map pins what it maps and fails with EFAULT for an address the process
 * has not mapped, on vfio-core's mock as on the kernel.
 */
export const HOST_RAM = (HOST_RAM_REGION.address + GiB - 1n) & ~(GiB - 1n);
