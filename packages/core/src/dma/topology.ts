// Which containers a guest gets and how much memory they pin. Without a guest
// IOMMU every group shares one container holding all RAM (QEMU's one address
// space, one container). With one, each group gets its own container, as
// cloud-hypervisor and crosvm do, because each follows its own guest domain:
// type1 accounts pinned pages per container (vfio_lock_acct in
// vfio_pin_pages_remote), so the budget becomes N x guest RAM. sPAPR v2
// preregisters memory per process (mm_iommu_new accounts it once per mm), so
// its containers share one registration.
import { hasCapIpcLock, MEMLOCK_HEADROOM, readLockedMemoryLimit } from '../host/memlock';
import type { HostFs } from '../host/seam';
import { ramSize, translationEnabled, type GuestModel } from './guest';
import type { DmaGroup } from './target';

/** RLIMIT_MEMLOCK as the process sees it, and whether CAP_IPC_LOCK lifts it. */
export interface MemlockLimit {
  /** Soft limit in bytes, or 'unlimited' (RLIM_INFINITY). */
  readonly soft: bigint | 'unlimited';
  /** CAP_IPC_LOCK: vfio_lock_acct does not check the limit for such a process. */
  readonly capIpcLock?: boolean;
}

/** The process's limit as the host model reads it (/proc/self/limits, CapEff). */
export function memlockFromHost(host: HostFs): MemlockLimit {
  const soft = readLockedMemoryLimit(host).soft;
  return { soft: soft ?? 'unlimited', capIpcLock: hasCapIpcLock(host) };
}

export interface PlannedContainer {
  readonly groups: readonly number[];
  /** What it holds: all RAM, what the guest's domain maps, or TCE windows. */
  readonly holds: 'all-ram' | 'guest-domain' | 'tce-windows';
  /** The most it may pin, bytes. */
  readonly pinnedBytes: bigint;
}

export interface ContainerTopology {
  readonly policy: 'identity' | 'shadow' | 'spapr';
  readonly containers: readonly PlannedContainer[];
  /** What the kernel will charge against RLIMIT_MEMLOCK at worst. */
  readonly pinnedBytes: bigint;
  readonly memlock?: MemlockLimit;
  /** What RLIMIT_MEMLOCK must be at least: pinned bytes plus the host model's headroom (libvirt's 1 GiB). */
  readonly requiredMemlock: bigint;
  /** False when the limit is below `requiredMemlock` (the kernel would answer ENOMEM). */
  readonly fitsMemlock: boolean;
}

export function planContainers(guest: GuestModel, groups: readonly DmaGroup[], memlock?: MemlockLimit): ContainerTopology {
  const ram = ramSize(guest.memory);
  const ids = groups.map((g) => g.id);
  let policy: ContainerTopology['policy'];
  let containers: PlannedContainer[];
  let pinned: bigint;
  if (guest.iommu.kind === 'none') {
    policy = 'identity';
    containers = ids.length > 0 ? [{ groups: ids, holds: 'all-ram', pinnedBytes: ram }] : [];
    pinned = ids.length > 0 ? ram : 0n;
  } else if (guest.iommu.kind === 'spapr-tce') {
    policy = 'spapr';
    containers = ids.map((id) => ({ groups: [id], holds: 'tce-windows', pinnedBytes: ram }));
    pinned = ids.length > 0 ? ram : 0n;
  } else {
    // Present but off, each container holds all RAM; on, at most all RAM each.
    policy = translationEnabled(guest.iommu) ? 'shadow' : 'identity';
    containers = ids.map((id) => ({ groups: [id], holds: translationEnabled(guest.iommu) ? 'guest-domain' : 'all-ram', pinnedBytes: ram }));
    pinned = ram * BigInt(ids.length);
  }
  const requiredMemlock = pinned + MEMLOCK_HEADROOM;
  const fitsMemlock = !memlock || memlock.capIpcLock === true || memlock.soft === 'unlimited' || requiredMemlock <= memlock.soft;
  return { policy, containers, pinnedBytes: pinned, requiredMemlock, ...(memlock ? { memlock } : {}), fitsMemlock };
}
