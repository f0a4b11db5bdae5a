// The locked-memory budget of an assignment. VFIO pins every page it maps for
// DMA and charges it to the process's RLIMIT_MEMLOCK: vfio_iommu_type1's
// vfio_lock_acct (type1), and mm_iommu_do_alloc's account_locked_vm for
// sPAPR's registered memory. Both skip the check for a process with
// CAP_IPC_LOCK. A map beyond the limit fails with ENOMEM, which QEMU reports
// only as "vfio_dma_map(...) = -12 (Cannot allocate memory)": better said here.
import { MemlockTooLowError } from './errors';
import type { HostPlatform } from './model';
import type { HostFs } from './seam';

/** Whether the guest has an IOMMU, and whether it has turned it on (see lab-facts: a present but off vIOMMU maps all RAM). */
export type GuestIommuState = 'none' | 'present-disabled' | 'enabled';

export interface MemlockRequest {
  /** Guest RAM, bytes. */
  readonly guestMemoryBytes: bigint;
  readonly guestIommu?: GuestIommuState;
  /** VFIO groups assigned to the guest (each gets its own container behind an enabled vIOMMU). Default 1. */
  readonly groups?: number;
  /** Default: x86-style type1 accounting. */
  readonly platform?: HostPlatform;
}

/** RLIMIT_MEMLOCK; `undefined` is unlimited. */
export interface LockedMemoryLimit {
  readonly soft: bigint | undefined;
  readonly hard: bigint | undefined;
}

export interface MemlockReport {
  /** Bytes VFIO will pin at most. */
  readonly pinnedBytes: bigint;
  /** What RLIMIT_MEMLOCK must be at least: the pinned bytes plus 1 GiB of headroom. */
  readonly requiredBytes: bigint;
  readonly limit: LockedMemoryLimit;
  /** The process has CAP_IPC_LOCK, so the kernel does not enforce the limit on it. */
  readonly capIpcLock: boolean;
  readonly ok: boolean;
  /** One sentence: why it is fine or what is short. */
  readonly reason: string;
  /** Ways to raise the limit to `requiredBytes` (empty when ok). */
  readonly hints: readonly string[];
}

const GiB = 1n << 30n;
/**
 * Headroom beyond guest RAM. libvirt's qemuDomainGetMemLockLimitBytes adds the
 * same 1 GiB for a VFIO guest, for MMIO and the small pinned regions QEMU
 * maps beside RAM (ROMs, emulated device memory).
 */
export const MEMLOCK_HEADROOM = GiB;

const CAP_IPC_LOCK = 14;

/** RLIMIT_MEMLOCK of the process, from /proc/self/limits. */
export function readLockedMemoryLimit(host: HostFs): LockedMemoryLimit {
  const line = (host.readText('/proc/self/limits') ?? '').split('\n').find((l) => l.startsWith('Max locked memory'));
  const fields = line?.slice('Max locked memory'.length).trim().split(/\s+/) ?? [];
  const value = (v: string | undefined) => (v === undefined || v === 'unlimited' ? undefined : BigInt(v));
  return { soft: value(fields[0]), hard: value(fields[1]) };
}

/** True when /proc/self/status shows CAP_IPC_LOCK in the effective set. */
export function hasCapIpcLock(host: HostFs): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(host.readText('/proc/self/status') ?? '');
  return m ? ((BigInt(`0x${m[1]}`) >> BigInt(CAP_IPC_LOCK)) & 1n) === 1n : false;
}

/** Bytes an assignment pins: all guest RAM, once per container that maps it. */
export function pinnedBytesFor(request: MemlockRequest): bigint {
  const groups = BigInt(Math.max(1, request.groups ?? 1));
  // Behind an enabled vIOMMU each device has its own address space, so QEMU
  // gives each group its own container and type1 charges the same page once
  // per container (libvirt multiplies by the VFIO device count for the same
  // reason). sPAPR charges registered memory once per process (mm_iommu).
  const containers = request.guestIommu === 'enabled' && request.platform !== 'power' ? groups : 1n;
  return request.guestMemoryBytes * containers;
}

/** Compare what an assignment pins with the process's RLIMIT_MEMLOCK. */
export function checkLockedMemory(host: HostFs, request: MemlockRequest): MemlockReport {
  const pinnedBytes = pinnedBytesFor(request);
  const requiredBytes = pinnedBytes + MEMLOCK_HEADROOM;
  const limit = readLockedMemoryLimit(host);
  const capIpcLock = hasCapIpcLock(host);
  const base = { pinnedBytes, requiredBytes, limit, capIpcLock };
  if (limit.soft === undefined) return { ...base, ok: true, reason: 'RLIMIT_MEMLOCK is unlimited', hints: [] };
  if (limit.soft >= requiredBytes) {
    return { ...base, ok: true, reason: `RLIMIT_MEMLOCK ${formatBytes(limit.soft)} covers the ${formatBytes(requiredBytes)} needed`, hints: [] };
  }
  if (capIpcLock) {
    return {
      ...base,
      ok: true,
      reason: `RLIMIT_MEMLOCK is ${formatBytes(limit.soft)}, below the ${formatBytes(requiredBytes)} needed, but this process has CAP_IPC_LOCK, which VFIO's accounting exempts (a VMM running as another user would not be)`,
      hints: [],
    };
  }
  return {
    ...base,
    ok: false,
    reason: `RLIMIT_MEMLOCK is ${formatBytes(limit.soft)} but the assignment pins ${formatBytes(pinnedBytes)} (${formatBytes(requiredBytes)} with headroom): VFIO_IOMMU_MAP_DMA would fail with ENOMEM`,
    hints: raiseHints(requiredBytes, limit),
  };
}

/** Throw MemlockTooLowError unless the limit covers the assignment. */
export function assertLockedMemory(host: HostFs, request: MemlockRequest): MemlockReport {
  const report = checkLockedMemory(host, request);
  if (!report.ok) {
    const kib = (report.requiredBytes + 1023n) / 1024n;
    throw new MemlockTooLowError(
      `${report.reason}; raise it to ${report.requiredBytes} bytes`,
      `ulimit -l ${kib} in the VMM's shell, or LimitMEMLOCK=${report.requiredBytes} for a systemd service`,
    );
  }
  return report;
}

/** The ways to raise RLIMIT_MEMLOCK to `bytes`, each with the exact number in its own unit. */
export function raiseHints(bytes: bigint, limit: LockedMemoryLimit): readonly string[] {
  const kib = (bytes + 1023n) / 1024n;
  const hints = [
    `for this shell: ulimit -l ${kib}`,
    `for a user's logins, in /etc/security/limits.conf: USER soft memlock ${kib} and USER hard memlock ${kib}`,
    `for a systemd service: LimitMEMLOCK=${bytes} in its [Service] section`,
    `for a running process: prlimit --memlock=${bytes}:${bytes} --pid PID`,
  ];
  if (limit.hard !== undefined && limit.hard < bytes) {
    hints.unshift(`the hard limit (${limit.hard} bytes) is below it too: only root can raise it (ulimit -Hl ${kib} as root, or limits.conf)`);
  }
  return hints;
}

/** `8 MiB`, `4 GiB`, `5.5 GiB`. */
export function formatBytes(n: bigint): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  let scaled = Number(n);
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} bytes` : `${Number.isInteger(scaled) ? scaled : scaled.toFixed(1)} ${units[unit]}`;
}

const CAP_SYS_RESOURCE = 24;

/** True when /proc/self/status shows CAP_SYS_RESOURCE in the effective set: setrlimit may raise a hard limit. */
export function hasCapSysResource(host: HostFs): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(host.readText('/proc/self/status') ?? '');
  return m ? ((BigInt(`0x${m[1]}`) >> BigInt(CAP_SYS_RESOURCE)) & 1n) === 1n : false;
}

/** The RLIMIT_MEMLOCK a VMM that vfiokit starts gets (`vfiokit run`). */
export interface VmmMemlock {
  /** This process's limit, which the VMM inherits. */
  readonly current: LockedMemoryLimit;
  /** What the guest needs: pinned bytes plus headroom. */
  readonly requiredBytes: bigint;
  /** The limit to start the VMM with (soft, hard; undefined = unlimited), or absent when the inherited one does. */
  readonly raiseTo?: { readonly soft: bigint; readonly hard: bigint | undefined };
  /** One sentence for the operator. */
  readonly reason: string;
}

/**
 * Decide the VMM's RLIMIT_MEMLOCK, as libvirt does before it starts QEMU for
 * a VFIO guest (qemuProcessAdjustMemLock raises it to
 * qemuDomainGetMemLockLimitBytes): the inherited limit when it covers
 * `requiredBytes` (or CAP_IPC_LOCK lifts it), else the soft limit raised up
 * to the hard one (setrlimit lets any process do that), or both when this
 * process has CAP_SYS_RESOURCE. Throws MemlockTooLowError, with the number,
 * when the hard limit is below what is needed and cannot be raised.
 */
export function memlockForVmm(host: HostFs, requiredBytes: bigint): VmmMemlock {
  const current = readLockedMemoryLimit(host);
  const base = { current, requiredBytes };
  if (current.soft === undefined) return { ...base, reason: 'RLIMIT_MEMLOCK is unlimited' };
  if (current.soft >= requiredBytes) return { ...base, reason: `RLIMIT_MEMLOCK ${formatBytes(current.soft)} covers the ${formatBytes(requiredBytes)} needed` };
  if (hasCapIpcLock(host)) return { ...base, reason: `RLIMIT_MEMLOCK is ${formatBytes(current.soft)}, but CAP_IPC_LOCK exempts the VMM from VFIO's accounting` };
  if (current.hard === undefined || current.hard >= requiredBytes) {
    return {
      ...base,
      raiseTo: { soft: requiredBytes, hard: current.hard },
      reason: `RLIMIT_MEMLOCK raised from ${formatBytes(current.soft)} to ${requiredBytes} bytes (${formatBytes(requiredBytes)}) for the VMM, within the hard limit ${current.hard === undefined ? 'unlimited' : formatBytes(current.hard)}`,
    };
  }
  if (hasCapSysResource(host)) {
    return {
      ...base,
      raiseTo: { soft: requiredBytes, hard: requiredBytes },
      reason: `RLIMIT_MEMLOCK raised from ${formatBytes(current.soft)} (hard ${formatBytes(current.hard)}) to ${requiredBytes} bytes (${formatBytes(requiredBytes)}) for the VMM, with CAP_SYS_RESOURCE`,
    };
  }
  const kib = (requiredBytes + 1023n) / 1024n;
  throw new MemlockTooLowError(
    `the guest needs RLIMIT_MEMLOCK of ${requiredBytes} bytes (${formatBytes(requiredBytes)}, its pinned RAM plus ${formatBytes(MEMLOCK_HEADROOM)} headroom) but the hard limit is ${current.hard} bytes (${formatBytes(current.hard)}), which only root can raise`,
    `raise the hard limit to ${requiredBytes} bytes (as root: ulimit -Hl ${kib}; limits.conf: USER hard memlock ${kib}; systemd: LimitMEMLOCK=${requiredBytes}), or run vfiokit as root`,
  );
}
