// Managed driver switching of whole IOMMU groups, as libvirt's
// virPCIDeviceBindToStub / virPCIDeviceUnbindFromStub do it: set
// driver_override, unbind from the current driver, and let drivers_probe
// attach the driver the override names. driver_override (not new_id) keeps
// vfio-pci from grabbing every other device with the same ids.
//
// All or nothing: the original driver of each device is written to the state
// folder before the device is touched; if any step fails, every device
// already moved is put back and the error says what happened. Binding what is
// already bound, or unbinding what is not, changes nothing and is no error.
import { discoverHost, findDevice, findGroup, PCI_DEVICES, PCI_DRIVERS } from './discover';
import {
  BindFailedError,
  GroupNotFoundError,
  GroupNotBoundError,
  GroupNotViableError,
  HostError,
  NoIommuError,
  RollbackFailedError,
  UnsafeDetachError,
  VfioPciUnavailableError,
} from './errors';
import type { HostModel, IommuGroup, PciDevice } from './model';
import { parsePciIds } from './pci-ids';
import { knownProbeRefusal } from './probe';
import { describeViolation, findProtectedDevices, safetyViolations, type SafetyFinding, type SafetyOverride } from './safety';
import { errnoOf, type HostFs } from './seam';
import type { BindingRecord, BindingStore } from './state';
import { allowsViability, checkViability, describeViability, viabilityRuleFor, type BlockingDevice } from './viability';

const VFIO_PCI = 'vfio-pci';
const PCI_BUS = '/sys/bus/pci';

/** What will happen to one device of the group. */
export type DeviceAction =
  /** Move it to vfio-pci. */
  | 'bind'
  /** It is on vfio-pci already. */
  | 'already-bound'
  /** A bridge (or other bystander) the group stays viable with: left as it is. */
  | 'leave'
  /** A bridge held by a DMA-using driver: unbound and left without a driver (vfio-pci refuses bridges). */
  | 'detach';

export interface PlannedDevice {
  readonly address: string;
  readonly action: DeviceAction;
  /** Its driver now, absent when none. */
  readonly driver?: string;
}

/** What `bindGroup` would do, decided before anything is written. */
export interface BindPlan {
  readonly group: number;
  readonly devices: readonly PlannedDevice[];
  /** Safety rules that refuse the plan (after `force`); empty when it may go ahead. */
  readonly refusals: readonly SafetyFinding[];
}

export interface BindOptions {
  /** Where the original drivers are remembered. */
  readonly store: BindingStore;
  /** Safety rules to waive. */
  readonly force?: SafetyOverride;
  /** Plan and check only: write nothing. */
  readonly dryRun?: boolean;
}

/** One device that changed driver. */
export interface DriverChange {
  readonly address: string;
  readonly from?: string;
  readonly to?: string;
}

export interface BindResult {
  readonly group: number;
  readonly plan: BindPlan;
  /** Devices whose driver changed, in order (empty for a dry run or when all were bound already). */
  readonly changes: readonly DriverChange[];
  /** Every sysfs write, as `echo DATA > FILE`. */
  readonly steps: readonly string[];
  readonly dryRun: boolean;
  /**
   * What keeps the group from being viable even with every PCI function on
   * vfio-pci: non-PCI members on drivers, which vfiokit cannot move. Empty
   * when the group is (or, for a dry run, would be) viable.
   */
  readonly stillBlocking: readonly BlockingDevice[];
}

/** The group a target names: an IOMMU group number, or the group of a device address. */
export function resolveGroup(model: HostModel, target: string | number): IommuGroup {
  if (typeof target === 'number' || /^\d+$/.test(target)) {
    const id = Number(target);
    const group = model.groups.find((g) => g.id === id);
    if (!group) {
      if (!model.iommu.present) throw new NoIommuError(`there is no IOMMU group ${id}: this host has no IOMMU groups at all`);
      throw new GroupNotFoundError(id);
    }
    return group;
  }
  const device = findDevice(model, target);
  if (device.iommuGroup === undefined) {
    if (model.iommu.present) {
      throw new NoIommuError(`${device.address} has no IOMMU group, so VFIO cannot take it (its IOMMU does not translate for it)`);
    }
    if (model.iommu.unsafeNoIommuMode) {
      throw new NoIommuError(
        `${device.address} has no IOMMU group: vfio is in unsafe no-IOMMU mode, where a device gets no DMA isolation; vfiokit does not manage devices that way`,
        'enable the IOMMU for isolated assignment, or bind the device by hand if you accept what no-IOMMU mode means',
      );
    }
    const off = /(?:^|\s)((?:intel_iommu|amd_iommu)=off|iommu=off)(?:\s|$)/.exec(model.kernelCommandLine ?? '')?.[1];
    throw new NoIommuError(
      `${device.address} has no IOMMU group: this host has no IOMMU enabled${off ? ` (the kernel was booted with ${off})` : ''}, so VFIO cannot take it`,
      off ? `remove ${off} from the kernel command line, boot with ${off.startsWith('amd') ? 'amd_iommu=on' : 'intel_iommu=on'}, and reboot` : undefined,
    );
  }
  return findGroup(model, device.iommuGroup);
}

/** Decide what binding a group to vfio-pci means, device by device, and which safety rules object. */
export function planGroupBind(host: HostFs, model: HostModel, target: string | number, force: SafetyOverride = false): BindPlan {
  const group = resolveGroup(model, target);
  const rule = viabilityRuleFor(model.kernelRelease);
  const devices: PlannedDevice[] = group.devices.map((d) => {
    const driver = d.driver === undefined ? {} : { driver: d.driver };
    if (d.driver === VFIO_PCI) return { address: d.address, action: 'already-bound', ...driver };
    // vfio_pci_core_register_device refuses any header but type 0, so bridges
    // are never bound; they only need to let go if their driver blocks viability.
    if (d.isBridge) return { address: d.address, action: allowsViability(d, rule) ? 'leave' : 'detach', ...driver };
    return { address: d.address, action: 'bind', ...driver };
  });
  const touched = group.devices.filter((d) => {
    const action = devices.find((p) => p.address === d.address)!.action;
    return action === 'bind' || action === 'detach';
  });
  const refusals = touched.length === 0 ? [] : safetyViolations(findProtectedDevices(host, model), touched, force);
  return { group: group.id, devices, refusals };
}

/**
 * The `vfiokit bind` that moves this group: with the `--force` each safety
 * rule in its way needs, so a printed fix is never one bind then refuses.
 */
export function bindCommandFor(host: HostFs, model: HostModel, target: string | number): string {
  const plan = planGroupBind(host, model, target);
  return ['vfiokit bind', ...new Set(plan.refusals.map((f) => f.override)), String(target)].join(' ');
}

/**
 * The one rule for "may this group be assigned now", checked before any
 * device node is opened or any device_add is sent. A group must be viable
 * (vfio_group_set_container answers EPERM otherwise: GroupNotViableError),
 * and on vfio-pci (GroupNotBoundError): for a container one device is
 * enough, since /dev/vfio/N exists once a device of the group is on
 * vfio-pci; for QEMU (`everyFunction`) each function must be, since QEMU
 * opens every function it is given through vfio-pci. The error names the
 * group, what holds it, and the bind that fixes it (with the --force each
 * safety rule in its way needs).
 */
export function assertGroupsAssignable(host: HostFs, model: HostModel, ids: readonly (number | string)[], options: { everyFunction?: boolean } = {}): void {
  const safety = findProtectedDevices(host, model);
  for (const target of ids) {
    const group = resolveGroup(model, target);
    const report = checkViability(model, group, safety);
    if (!report.viable) throw new GroupNotViableError(group.id, describeViability(report), bindCommandFor(host, model, group.id));
    const off = group.devices.filter((d) => !d.isBridge && d.driver !== 'vfio-pci');
    if (options.everyFunction ? off.length === 0 : report.assignable.length > 0) continue;
    const which = `${off.map((d) => d.address).join(', ')} ${off.length > 1 ? 'are' : 'is'} not on vfio-pci`;
    throw new GroupNotBoundError(
      group.id,
      options.everyFunction
        ? `group ${group.id} is viable but ${which}, which QEMU opens every function through`
        : `group ${group.id} is viable but ${which}, so VFIO cannot open it: /dev/vfio/${group.id} exists once a device of the group is on vfio-pci`,
      bindCommandFor(host, model, group.id),
    );
  }
}

/**
 * Move every device of a group (named by number or by one of its devices) to
 * vfio-pci. Throws before writing anything when the target is unknown, a
 * safety rule objects, or vfio-pci would refuse a device; throws after putting
 * everything back when a write fails midway.
 */
export function bindGroup(host: HostFs, target: string | number, options: BindOptions): BindResult {
  const release = options.dryRun ? () => {} : options.store.lock();
  try {
    return bindLocked(host, target, options);
  } finally {
    release();
  }
}

function bindLocked(host: HostFs, target: string | number, options: BindOptions): BindResult {
  const model = discoverHost(host, { pciIds: NO_NAMES });
  const plan = planGroupBind(host, model, target, options.force ?? false);
  const group = findGroup(model, plan.group);
  if (plan.refusals.length > 0) {
    const first = plan.refusals[0]!;
    throw new UnsafeDetachError(
      first.address,
      first.rule,
      plan.refusals.map((f) => describeViolation(f, group.devices.find((d) => d.address === f.address)?.driver)).join('; '),
      `vfiokit bind ${plan.refusals.map((f) => f.override).filter((o, i, all) => all.indexOf(o) === i).join(' ')} ${first.address}`,
    );
  }
  const toMove = group.devices.filter((d) => {
    const action = plan.devices.find((p) => p.address === d.address)!.action;
    return action === 'bind' || action === 'detach';
  });
  if (toMove.length > 0 && !model.vfioPciLoaded) throw new VfioPciUnavailableError();
  for (const d of toMove) refuseKnownProbeFailures(d);
  const pci = new Set(group.devices.map((d) => d.address));
  const stillBlocking = checkViability(model, group).blocking.filter((b) => !pci.has(b.address));
  if (options.dryRun || toMove.length === 0) {
    return { group: group.id, plan, changes: [], steps: [], dryRun: !!options.dryRun, stillBlocking };
  }

  const steps: string[] = [];
  const moved: { device: PciDevice; record: BindingRecord }[] = [];
  const changes: DriverChange[] = [];
  for (const device of toMove) {
    try {
      const record = recordToKeep(options.store.get(device.address), device, group.id);
      options.store.put(record);
      moved.push({ device, record });
      moveToVfio(host, device, steps);
      changes.push({ address: device.address, ...(device.driver ? { from: device.driver } : {}), ...(device.isBridge ? {} : { to: VFIO_PCI }) });
    } catch (err) {
      const cause = describeFailure(host, device.address, err, `moving ${device.address} to vfio-pci`);
      const undone = rollBack(host, options.store, moved.reverse(), steps);
      const what = `binding group ${group.id} to vfio-pci failed: ${cause}`;
      if (undone.failed.length > 0) {
        throw new RollbackFailedError(`${what}; putting the group back failed too: ${undone.failed.join('; ')}`, steps, {
          hint: `check 'vfiokit show ${group.id}' and reattach the listed devices by hand`,
          cause: err,
        });
      }
      throw new BindFailedError(`${what}; ${undone.summary}`, errnoOf(err), steps, {
        hint: 'the kernel log (dmesg) tells why a driver refused a device',
        cause: err,
      });
    }
  }
  return { group: group.id, plan, changes, steps, dryRun: false, stillBlocking };
}

export interface UnbindOptions {
  readonly store: BindingStore;
  readonly dryRun?: boolean;
  /**
   * Release only the devices vfiokit moved (libvirt's "managed" semantics),
   * leaving devices someone else put on vfio-pci where they are. Default:
   * release every vfio-pci device of the group.
   */
  readonly onlyRecorded?: boolean;
  /**
   * Release only these devices of the group (PCI addresses): undoing one
   * bindGroup's changes leaves alone devices an earlier run put on vfio-pci.
   * Default: every device of the group.
   */
  readonly devices?: readonly string[];
}

/** One device `unbindGroup` gives back. */
export interface PlannedRelease {
  readonly address: string;
  /** The driver it returns to (from its record); absent: no driver, or the kernel's choice when there is no record. */
  readonly to?: string;
  /** True when vfiokit has a record of what it had; false: vfiokit did not bind it, so the kernel picks a driver. */
  readonly recorded: boolean;
}

export interface UnbindResult {
  readonly group: number;
  readonly releases: readonly PlannedRelease[];
  readonly changes: readonly DriverChange[];
  readonly steps: readonly string[];
  readonly dryRun: boolean;
}

/**
 * Give every device of a group back to the driver it had before `bindGroup`
 * (from the state folder, so this works from a new process). Devices on
 * vfio-pci that vfiokit did not bind get their override cleared and are
 * reprobed, as libvirt's reattach does. On failure, devices already released
 * go back to vfio-pci: the group is left as it was.
 */
export function unbindGroup(host: HostFs, target: string | number, options: UnbindOptions): UnbindResult {
  const release = options.dryRun ? () => {} : options.store.lock();
  try {
    return unbindLocked(host, target, options);
  } finally {
    release();
  }
}

function unbindLocked(host: HostFs, target: string | number, options: UnbindOptions): UnbindResult {
  const model = discoverHost(host, { pciIds: NO_NAMES });
  const group = resolveGroup(model, target);
  const releases: { device: PciDevice; record: BindingRecord | undefined }[] = [];
  for (const device of group.devices) {
    const record = matchingRecord(options.store.get(device.address), device);
    if (options.onlyRecorded && record === undefined) continue;
    if (options.devices && !options.devices.includes(device.address)) continue;
    if (device.driver === VFIO_PCI || (record !== undefined && device.driver !== record.originalDriver)) {
      releases.push({ device, record });
    } else if (record !== undefined && !options.dryRun) {
      // Back on its own driver already (someone reattached it by hand): the record is stale.
      options.store.remove(device.address);
    }
  }
  const planned = releases.map(({ device, record }) => ({
    address: device.address,
    ...(record?.originalDriver ? { to: record.originalDriver } : {}),
    recorded: record !== undefined,
  }));
  if (releases.length > 0) refuseGroupInUse(host, group.id);
  if (options.dryRun || releases.length === 0) {
    return { group: group.id, releases: planned, changes: [], steps: [], dryRun: !!options.dryRun };
  }

  const steps: string[] = [];
  const changes: DriverChange[] = [];
  const done: PciDevice[] = [];
  for (const { device, record } of releases) {
    try {
      const to = restoreDriver(host, device.address, record, steps);
      changes.push({ address: device.address, ...(device.driver ? { from: device.driver } : {}), ...(to ? { to } : {}) });
      done.push(device);
    } catch (err) {
      const cause = describeFailure(host, device.address, err, `giving ${device.address} back`);
      const failed: string[] = [];
      // The device that failed may be half-way (unbound, override cleared): it goes back too.
      const back = host.exists(`${PCI_DEVICES}/${device.address}`) ? [device, ...done.reverse()] : done.reverse();
      const restored: string[] = [];
      for (const d of back) {
        const override = host.readText(`${PCI_DEVICES}/${d.address}/driver_override`)?.trim();
        if (driverOf(host, d.address) === VFIO_PCI && override === (d.driverOverride ?? '(null)')) continue;
        try {
          moveToVfio(host, d, steps);
          // As it was: a device someone bound without an override keeps none.
          if (d.driverOverride !== VFIO_PCI) write(host, `${PCI_DEVICES}/${d.address}/driver_override`, d.driverOverride ?? '\n', steps);
          restored.push(d.address);
        } catch (again) {
          failed.push(`${d.address}: ${describeFailure(host, d.address, again, 'rebinding it to vfio-pci')}`);
        }
      }
      const what = `releasing group ${group.id} from vfio-pci failed: ${cause}`;
      if (failed.length > 0) {
        throw new RollbackFailedError(`${what}; putting the group back on vfio-pci failed too: ${failed.join('; ')}`, steps, { cause: err });
      }
      throw new BindFailedError(
        `${what}; ${restored.length === 0 ? 'no device had changed' : `${restored.join(', ')} went back to vfio-pci`}, so the group is as it was`,
        errnoOf(err),
        steps,
        { hint: 'the kernel log (dmesg) tells why a driver refused a device', cause: err },
      );
    }
  }
  for (const { device } of releases) options.store.remove(device.address);
  return { group: group.id, releases: planned, changes, steps, dryRun: false };
}

// ---- steps -----------------------------------------------------------------

/** Binding needs no names; skipping pci.ids saves reading a megabyte per call. */
const NO_NAMES = parsePciIds('', undefined);

function write(host: HostFs, file: string, data: string, steps: string[]): void {
  steps.push(`${shellEcho(data)} > ${file}`);
  host.writeText(file, data);
}

/**
 * The shell command an operator can paste to make the same write. Clearing
 * driver_override is a lone newline (`echo` with no argument): the kernel's
 * driver_set_override treats an empty or newline-only value as "none", while
 * `echo "\n"` would store a backslash and an n.
 */
export function shellEcho(data: string): string {
  const text = data.replace(/\n$/, '');
  if (text === '') return 'echo';
  return /^[A-Za-z0-9_.:/-]+$/.test(text) ? `echo ${text}` : `echo '${text.replace(/'/g, `'\\''`)}'`;
}

function driverOf(host: HostFs, address: string): string | undefined {
  return host.readLink(`${PCI_DEVICES}/${address}/driver`)?.split('/').pop();
}

/** virPCIDeviceBindToStub: override, unbind, reprobe; a bridge is only unbound. */
function moveToVfio(host: HostFs, device: PciDevice, steps: string[]): void {
  const a = device.address;
  write(host, `${PCI_DEVICES}/${a}/driver_override`, VFIO_PCI, steps);
  const current = driverOf(host, a);
  if (current === VFIO_PCI) return;
  if (current !== undefined) write(host, `${PCI_DEVICES}/${a}/driver/unbind`, a, steps);
  if (device.isBridge) return;
  write(host, `${PCI_BUS}/drivers_probe`, a, steps);
  const now = driverOf(host, a);
  if (now !== VFIO_PCI) {
    // drivers_probe reports no probe errors (bus_rescan_devices_helper): only the result tells.
    throw new HostError('HOST_PROBE_REFUSED', `vfio-pci did not take ${a} after drivers_probe (it has ${now ?? 'no driver'})`);
  }
}

/** virPCIDeviceUnbindFromStub: unbind, restore the override, reprobe (or bind the recorded driver). */
function restoreDriver(host: HostFs, address: string, record: BindingRecord | undefined, steps: string[]): string | undefined {
  const current = driverOf(host, address);
  // "\n" clears an override (driver_set_override); restore the one it had, if any.
  const override = record?.originalOverride ?? '\n';
  if (record !== undefined && current === record.originalDriver) {
    // It never left (a move that failed before its unbind): only the override changed.
    write(host, `${PCI_DEVICES}/${address}/driver_override`, override, steps);
    return current;
  }
  if (current !== undefined) write(host, `${PCI_DEVICES}/${address}/driver/unbind`, address, steps);
  write(host, `${PCI_DEVICES}/${address}/driver_override`, override, steps);
  if (record !== undefined && record.originalDriver === undefined) return undefined;
  write(host, `${PCI_BUS}/drivers_probe`, address, steps);
  let now = driverOf(host, address);
  const wanted = record?.originalDriver;
  if (wanted !== undefined && now !== wanted) {
    if (now !== undefined) write(host, `${PCI_DEVICES}/${address}/driver/unbind`, address, steps);
    if (!host.exists(`${PCI_DRIVERS}/${wanted}`)) {
      throw new HostError('HOST_DRIVER_MISSING', `${address}'s driver ${wanted} is not loaded`, { hint: `modprobe ${wanted}` });
    }
    write(host, `${PCI_DRIVERS}/${wanted}/bind`, address, steps);
    now = driverOf(host, address);
    if (now !== wanted) throw new HostError('HOST_PROBE_REFUSED', `${wanted} did not take ${address} back (it has ${now ?? 'no driver'})`);
  }
  return now;
}

/** Put moved devices back, newest first; says what it did and what it could not. */
function rollBack(
  host: HostFs,
  store: BindingStore,
  moved: readonly { device: PciDevice; record: BindingRecord }[],
  steps: string[],
): { summary: string; failed: string[] } {
  const restored: string[] = [];
  const vanished: string[] = [];
  const failed: string[] = [];
  for (const { device, record } of moved) {
    if (!host.exists(`${PCI_DEVICES}/${device.address}`)) {
      vanished.push(device.address);
      store.remove(device.address);
      continue;
    }
    try {
      restoreDriver(host, device.address, record, steps);
      store.remove(device.address);
      restored.push(`${device.address} to ${record.originalDriver ?? 'no driver'}`);
    } catch (err) {
      failed.push(`${device.address} (was ${record.originalDriver ?? 'unbound'}): ${describeFailure(host, device.address, err, 'restoring it')}`);
    }
  }
  const parts = [];
  if (restored.length > 0) parts.push(`put back ${restored.join(', ')}`);
  if (vanished.length > 0) parts.push(`${vanished.join(', ')} left the host and needs nothing`);
  return { summary: parts.length > 0 ? `${parts.join('; ')}: the host is as it was` : 'nothing had changed', failed };
}

function describeFailure(host: HostFs, address: string, err: unknown, doing: string): string {
  if (!host.exists(`${PCI_DEVICES}/${address}`)) return `${address} vanished from the host (hot-unplugged or removed) while ${doing}`;
  const errno = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  return errno === undefined ? message : `${doing}: the kernel answered ${errno} (${message})`;
}

/**
 * The record to hold while moving `device`. A device left half-way by a
 * vfiokit that died mid-switch (our override set, no driver yet) keeps the
 * record that process wrote: it knows the driver the device really had.
 */
function recordToKeep(existing: BindingRecord | undefined, device: PciDevice, group: number): BindingRecord {
  const own = matchingRecord(existing, device);
  return own !== undefined && device.driverOverride === VFIO_PCI && device.driver === undefined ? own : recordFor(device, group);
}

function recordFor(device: PciDevice, group: number): BindingRecord {
  return {
    address: device.address,
    vendorId: device.vendorId,
    deviceId: device.deviceId,
    ...(device.driver === undefined ? {} : { originalDriver: device.driver }),
    ...(device.driverOverride === undefined ? {} : { originalOverride: device.driverOverride }),
    group,
    movedAt: new Date().toISOString(),
  };
}

/** A record only counts for the card it was written for (a hot-swap puts another in the slot). */
function matchingRecord(record: BindingRecord | undefined, device: PciDevice): BindingRecord | undefined {
  return record && record.vendorId === device.vendorId && record.deviceId === device.deviceId ? record : undefined;
}

/** Throw the refusal vfio-pci's probe would give `device` (knownProbeRefusal), before anything changes. */
export function refuseKnownProbeFailures(device: PciDevice): void {
  const refusal = knownProbeRefusal(device);
  if (refusal) throw new HostError(refusal.code, refusal.reason, { hint: refusal.hint });
}

/** A process that holds a VFIO group open. */
export interface GroupHolder {
  readonly pid: number;
  /** Its command name (`/proc/PID/comm`), when readable. */
  readonly comm?: string;
}

/**
 * The processes that have /dev/vfio/GROUP open (a VMM using it), found
 * through /proc/PID/fd. Another user's processes are visible only to root.
 */
export function groupHolders(host: HostFs, group: number): readonly GroupHolder[] {
  const holders: GroupHolder[] = [];
  for (const pid of host.list('/proc').filter((n) => /^\d+$/.test(n))) {
    for (const fd of host.list(`/proc/${pid}/fd`)) {
      if (host.readLink(`/proc/${pid}/fd/${fd}`) === `/dev/vfio/${group}`) {
        const comm = host.readText(`/proc/${pid}/comm`)?.trim();
        holders.push({ pid: Number(pid), ...(comm ? { comm } : {}) });
        break;
      }
    }
  }
  return holders;
}

/**
 * Unbinding vfio-pci from a device a process still has open blocks in the
 * kernel until that process lets go (vfio_unregister_group_dev waits), so a
 * group someone holds is refused up front, naming who holds it.
 */
function refuseGroupInUse(host: HostFs, group: number): void {
  const holders = groupHolders(host, group).map((h) => (h.comm ? `${h.comm} (pid ${h.pid})` : `pid ${h.pid}`));
  if (holders.length > 0) {
    throw new HostError('HOST_GROUP_IN_USE', `group ${group} is open in ${holders.join(', ')}: releasing it now would hang until they close it`, {
      hint: 'stop the VM (or detach the device from it) first',
    });
  }
}
