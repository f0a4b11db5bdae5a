// planAssignment: from a guest spec and the host to a plan, or to the reasons
// there can be none. Pure and synchronous: it reads the host model it is
// given and decides; nothing here touches sysfs, /dev/vfio or QEMU.
//
// The rules, in the order they are applied:
// 1. The spec is sound (guestSpecProblems) and fits the host: a pseries guest
//    needs a POWER host, a q35 guest an x86 one (VFIO hands the guest the
//    host's own IOMMU type: sPAPR TCE or type1).
// 2. Every selector names exactly one device; the device has an IOMMU group
//    and is not a bridge (vfio_pci_probe refuses non-normal headers).
// 3. A group is assigned whole or not at all (the kernel's unit of isolation,
//    vfio_group_viable): its other endpoints join the guest as companions, its
//    bridges stay with the host.
// 4. Devices a host-safety rule protects refuse the plan unless forced;
//    devices on another driver are an action (`vfiokit bind`), not a refusal.
// 5. Guest PCI placement (domains.ts), DMA policy and container topology
//    (dma's planContainers), and the guest/host IOMMU compatibility check
//    (dma's checkCompatibility), which also weighs pinned memory against
//    RLIMIT_MEMLOCK.
import {
  checkCompatibility,
  planContainers,
  q35Layout,
  spaprTceIommu,
  SPAPR_DMA64_START,
  validateLayout,
  virtioIommu,
  vtdIommu,
  type CompatReport,
  type ContainerTopology,
  type DmaGroup,
  type GuestIommu,
  type GuestModel,
  type HostIommuInfo,
  type MemlockLimit,
  type SpaprHostCaps,
  type TceWindow,
} from '../dma/index';
import { VfiokitError } from '../errors';
import { checkViability, msiIsolationVerdict, refuseKnownProbeFailures, safetyViolations, type HostModel, type IommuGroup, type PciDevice, type SafetyFinding, type SafetyOverride } from '../host/index';
import { chooseBackend, type BackendChoice, type VmmCapabilities } from './backend';
import { pseriesDomains, q35Domains, type GuestPciDomain } from './domains';
import { formatSelector, guestSpecProblems, isAddressSelector, type DeviceSelector, type GuestSpec } from './spec';

/** How much a finding matters. */
export type FindingKind =
  /** The plan cannot be carried out. */
  | 'refusal'
  /** Something to do on the host first (the fix says what). */
  | 'action'
  /** It will work, but not all of it (peer-to-peer DMA to a BAR, say). */
  | 'warning'
  /** Worth knowing: a companion device, an assumption. */
  | 'note';

export interface PlanFinding {
  readonly kind: FindingKind;
  /** Stable: `DEVICE_NOT_FOUND`, `GROUP_NOT_VIABLE`, `UNSAFE_DETACH`, `COMPAT_MEMLOCK`... */
  readonly code: string;
  /** What it is about: `devices[1]`, `group 1`, `0000:01:00.0`, `iommu`. */
  readonly subject: string;
  readonly message: string;
  /** The command or change that fixes it. */
  readonly fix?: string;
}

/** One host function the guest gets. */
export interface PlannedFunction {
  readonly address: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly driver?: string;
  /** `requested` when the spec named it; `companion` when it comes along with its group. */
  readonly role: 'requested' | 'companion';
  /** The spec's selector that named it (`devices[0]: 10de:1b80`). */
  readonly requestedAs?: string;
}

export interface PlannedGroup {
  readonly id: number;
  /** Endpoints assigned to the guest, in address order. */
  readonly functions: readonly PlannedFunction[];
  /** Bridges of the group that stay with the host. */
  readonly hostBridges: readonly string[];
  /** Viable right now (every device on vfio-pci or no DMA-owning driver). */
  readonly viable: boolean;
  readonly reservedRegions: DmaGroup['reservedRegions'];
}

/** Which guest memory the host IOMMU maps, and when. */
export type DmaPolicy =
  /** All guest RAM at IOVA = GPA, for the guest's whole life (no guest IOMMU). */
  | 'identity'
  /** All RAM at IOVA = GPA until the guest enables its IOMMU, then exactly what the guest maps. */
  | 'shadow'
  /** The guest's TCE windows, per PE (pseries). */
  | 'spapr-tce';

/** The TCE windows of one guest PHB. */
export interface PlannedTceWindows {
  readonly bridge: string;
  readonly group: number;
  readonly windows: readonly (TceWindow & { readonly createdBy: 'machine' | 'guest' })[];
}

export interface DmaPlan {
  readonly policy: DmaPolicy;
  readonly topology: ContainerTopology;
  /** pseries only: the default 32-bit window each PE starts with, and the 64-bit one the guest creates (DDW). */
  readonly tceWindows?: readonly PlannedTceWindows[];
}

export interface Plan {
  readonly spec: GuestSpec;
  /** True when no finding is a refusal: the plan can be carried out once its actions are done. */
  readonly ok: boolean;
  readonly groups: readonly PlannedGroup[];
  readonly domains: readonly GuestPciDomain[];
  /** The guest as the DMA policy sees it at boot (guest IOMMU present but not yet enabled). */
  readonly guest: GuestModel;
  readonly dma: DmaPlan;
  readonly hostIommu: HostIommuInfo;
  readonly compat: CompatReport;
  /** iommufd or the VFIO container, and why. */
  readonly backend: BackendChoice;
  readonly findings: readonly PlanFinding[];
  /** Commands to run on the host before starting the guest, in order. */
  readonly actions: readonly string[];
}

export interface PlanOptions {
  /** Every device a host-safety rule protects (core's findProtectedDevices); none when absent. */
  readonly protectedDevices?: readonly SafetyFinding[];
  /** Safety rules to waive. */
  readonly force?: SafetyOverride;
  /** RLIMIT_MEMLOCK of the VMM that will run the guest; unchecked when absent. */
  readonly memlock?: MemlockLimit;
  /** What the host's type1 container reports (VFIO_IOMMU_GET_INFO); assumed when absent (see assumedHostIommu). */
  readonly hostIommu?: HostIommuInfo;
  /** What the host's sPAPR PEs offer; the window checks are skipped when absent. */
  readonly spapr?: SpaprHostCaps;
  /**
   * What the VMM offers (QEMU's version), asked only when the host offers
   * iommufd; without it the plan keeps to the VFIO container and says so.
   */
  readonly vmm?: () => VmmCapabilities;
}

/** Thrown by assertPlanOk: a plan with refusals. */
export class PlanRefusedError extends VfiokitError {
  constructor(readonly plan: Plan) {
    // A device the host does not have comes first: it is what to fix before
    // anything else, and a caller tells "not found" from "refused" by the code.
    const all = plan.findings.filter((f) => f.kind === 'refusal');
    const refusals = [...all.filter((f) => f.code === 'DEVICE_NOT_FOUND'), ...all.filter((f) => f.code !== 'DEVICE_NOT_FOUND')];
    const first = refusals[0];
    const items = refusals.map((f) => `${f.subject}: ${f.message}`);
    super(
      first?.code === 'DEVICE_NOT_FOUND' ? 'PLAN_DEVICE_NOT_FOUND' : 'PLAN_UNSATISFIABLE',
      `guest ${plan.spec.name} cannot be planned on this host: ${items[0] ?? 'no reason given'}${items.length > 1 ? ` (and ${items.length - 1} more reason${items.length > 2 ? 's' : ''})` : ''}`,
      { ...(first?.fix === undefined ? {} : { hint: first.fix }), details: items.length > 1 ? items : [] },
    );
  }
}

const PAGE_4K_2M_1G = 0x40201000n;

/**
 * The host IOMMU a plan assumes when no container has been asked: type1 with
 * 4 KiB/2 MiB/1 GiB pages, a 48-bit aperture (4-level VT-d and AMD-Vi page
 * tables) and the kernel's default dma_entry_limit of 65535. Reserved regions
 * are not cut out here: the checks take them from each group.
 */
export function assumedHostIommu(): HostIommuInfo {
  return { pageSizes: PAGE_4K_2M_1G, iovaRanges: [{ start: 0n, size: 1n << 48n }], dmaEntryLimit: 65535 };
}

/** Throw PlanRefusedError if the plan has refusals; return it otherwise. */
export function assertPlanOk(plan: Plan): Plan {
  if (!plan.ok) throw new PlanRefusedError(plan);
  return plan;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

/** The device a selector names, or the refusal saying why none. */
function resolveSelector(model: HostModel, selector: DeviceSelector, field: string): PciDevice | PlanFinding {
  if (isAddressSelector(selector)) {
    const d = model.devices.find((x) => x.address === selector.address);
    if (d) return d;
    return {
      kind: 'refusal',
      code: 'DEVICE_NOT_FOUND',
      subject: field,
      message: `no PCI device ${selector.address} on this host`,
      fix: "list the host's devices with 'vfiokit ls'",
    };
  }
  const matches = model.devices.filter((d) => d.vendorId === selector.vendor && d.deviceId === selector.device);
  const d = matches[selector.index];
  if (d) return d;
  const ids = `${hex4(selector.vendor)}:${hex4(selector.device)}`;
  return {
    kind: 'refusal',
    code: 'DEVICE_NOT_FOUND',
    subject: field,
    message:
      matches.length === 0
        ? `no device with IDs ${ids} on this host`
        : `${formatSelector(selector)} asks for match ${selector.index} (from 0) but the host has ${matches.length} device(s) with IDs ${ids}: ${matches.map((m) => m.address).join(', ')}`,
    fix: `lspci -d ${ids}`,
  };
}

/** The guest model a spec describes, at boot. */
export function guestModelOf(spec: GuestSpec, hostIommu: HostIommuInfo): GuestModel {
  if (spec.machine === 'pseries') {
    // pseries RAM is one block from 0 (spapr_machine_init's memory region).
    const memory = validateLayout({ regions: [{ name: 'ram', gpa: 0n, size: spec.memoryBytes, source: 'boot' }] });
    return { name: spec.name, arch: 'ppc64', memory, iommu: spaprTceIommu() };
  }
  const hostEnd = hostIommu.iovaRanges.reduce((m, r) => (r.start + r.size > m ? r.start + r.size : m), 0n);
  let iommu: GuestIommu = { kind: 'none' };
  // QEMU's intel-iommu default, aw-bits=39 (the command line sets no other);
  // caching-mode=on, which vfio-pci behind a vIOMMU needs.
  if (spec.iommu === 'intel-iommu') iommu = vtdIommu({ addressWidth: 39, cachingMode: true, enabled: false });
  if (spec.iommu === 'virtio-iommu') {
    const bits = Math.min(64, hostEnd.toString(2).length - 1);
    iommu = virtioIommu({ enabled: false, addressWidth: bits });
  }
  return { name: spec.name, arch: 'x86_64', memory: q35Layout(spec.memoryBytes), iommu };
}

function nextPow2(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}

/** Plan the assignment; every reason it cannot happen is a `refusal` finding. */
export function planAssignment(host: HostModel, spec: GuestSpec, options: PlanOptions = {}): Plan {
  const findings: PlanFinding[] = [];
  for (const p of guestSpecProblems(spec)) findings.push({ kind: 'refusal', code: 'SPEC_INVALID', subject: p.field, message: p.message });

  if (!host.iommu.present) {
    findings.push({
      kind: 'refusal',
      code: 'NO_IOMMU',
      subject: 'host',
      message: 'this host has no IOMMU groups, so VFIO can assign nothing',
      fix: 'enable VT-d or AMD-Vi in the firmware, add intel_iommu=on on Intel, and reboot',
    });
  }
  // Without MSI isolation the kernel refuses the container's IOMMU at
  // VFIO_SET_IOMMU (EPERM): said here, before anything is bound or mapped.
  const msi = host.iommu.present && host.iommu.msiIsolation !== undefined ? msiIsolationVerdict(host.platform, host.iommu.msiIsolation) : undefined;
  if (msi?.severity !== undefined) {
    findings.push({
      kind: msi.severity,
      code: msi.severity === 'refusal' ? 'NO_MSI_ISOLATION' : 'UNSAFE_INTERRUPTS',
      subject: 'host',
      message: msi.message,
      fix: msi.fixes.join('; '),
    });
  }
  const wantPlatform = spec.machine === 'pseries' ? 'power' : 'x86';
  if (host.iommu.present && host.platform !== wantPlatform) {
    findings.push({
      kind: 'refusal',
      code: 'MACHINE_PLATFORM',
      subject: 'machine',
      message: `a ${spec.machine} guest gets host devices only on a${wantPlatform === 'x86' ? 'n' : ''} ${wantPlatform} host (VFIO hands the guest this host's ${host.platform === 'power' ? 'sPAPR TCE' : 'type1'} IOMMU); this host is ${host.platform}`,
      fix: wantPlatform === 'x86' ? 'use machine: pseries on a POWER host' : 'use machine: q35 on an x86 host',
    });
  }

  // Selectors -> devices -> groups, each group whole.
  const requested = new Map<string, string>();
  const groupIds: number[] = [];
  spec.devices.forEach((selector, i) => {
    const field = `devices[${i}]`;
    const found = resolveSelector(host, selector, field);
    if ('kind' in found) {
      findings.push(found);
      return;
    }
    if (requested.has(found.address)) {
      findings.push({ kind: 'refusal', code: 'DEVICE_TWICE', subject: field, message: `${formatSelector(selector)} is ${found.address}, already named by ${requested.get(found.address)}` });
      return;
    }
    if (found.isBridge) {
      findings.push({
        kind: 'refusal',
        code: 'DEVICE_IS_BRIDGE',
        subject: field,
        message: `${found.address} is a PCI bridge; vfio-pci takes only endpoints (vfio_pci_probe refuses other header types)`,
        fix: 'name the devices behind the bridge instead',
      });
      return;
    }
    if (found.iommuGroup === undefined) {
      if (host.iommu.present) findings.push({ kind: 'refusal', code: 'NO_GROUP', subject: field, message: `${found.address} has no IOMMU group, so VFIO cannot take it` });
      return;
    }
    requested.set(found.address, `${field}: ${formatSelector(selector)}`);
    if (!groupIds.includes(found.iommuGroup)) groupIds.push(found.iommuGroup);
  });

  const groups: PlannedGroup[] = [];
  const toDetach: PciDevice[] = [];
  for (const id of groupIds) {
    const group = host.groups.find((g) => g.id === id) as IommuGroup;
    const endpoints = group.devices.filter((d) => !d.isBridge);
    const functions: PlannedFunction[] = endpoints.map((d) => ({
      address: d.address,
      vendorId: d.vendorId,
      deviceId: d.deviceId,
      ...(d.driver === undefined ? {} : { driver: d.driver }),
      role: requested.has(d.address) ? 'requested' : 'companion',
      ...(requested.has(d.address) ? { requestedAs: requested.get(d.address)! } : {}),
    }));
    for (const f of functions.filter((x) => x.role === 'companion')) {
      findings.push({
        kind: 'note',
        code: 'GROUP_COMPANION',
        subject: f.address,
        message: `joins the guest because it shares IOMMU group ${id} with ${functions.find((x) => x.role === 'requested')!.address} (a group is assigned whole)`,
      });
    }
    const viability = checkViability(host, group);
    // The bind the operator runs needs --force for a protected device even
    // when this plan was forced: bind checks the rules again.
    const forced = [
      ...new Set(
        safetyViolations(
          options.protectedDevices ?? [],
          group.devices.filter((d) => d.driver !== 'vfio-pci' && (!d.isBridge || viability.blocking.some((b) => b.address === d.address))),
        ).map((v) => v.override),
      ),
    ];
    const bindFix = ['vfiokit bind', ...forced, functions.find((x) => x.role === 'requested')!.address].join(' ');
    if (!viability.viable) {
      findings.push({
        kind: 'action',
        code: 'GROUP_NOT_VIABLE',
        subject: `group ${id}`,
        message: `${viability.blocking.map((b) => `${b.address} is bound to ${b.driver}`).join(', ')}`,
        fix: bindFix,
      });
    } else if (functions.some((f) => f.driver !== 'vfio-pci')) {
      // Viable is not enough: QEMU opens every assigned function through
      // vfio-pci (VFIO_GROUP_GET_DEVICE_FD finds only devices vfio-pci bound).
      findings.push({
        kind: 'action',
        code: 'GROUP_NOT_BOUND',
        subject: `group ${id}`,
        message: `${functions.filter((f) => f.driver !== 'vfio-pci').map((f) => `${f.address} is ${f.driver ? `bound to ${f.driver}` : 'not bound to any driver'}`).join(', ')}; QEMU opens each assigned function through vfio-pci`,
        fix: bindFix,
      });
    }
    // What vfio-pci's probe would refuse (a PF whose VFs are enabled), by host's own rule.
    for (const d of endpoints.filter((x) => x.driver !== 'vfio-pci')) {
      try {
        refuseKnownProbeFailures(d);
      } catch (err) {
        if (!(err instanceof VfiokitError)) throw err;
        findings.push({ kind: 'refusal', code: err.code.replace(/^HOST_/, ''), subject: d.address, message: err.message, ...(err.hint === undefined ? {} : { fix: err.hint }) });
      }
    }
    toDetach.push(...group.devices.filter((d) => d.driver !== 'vfio-pci' && (!d.isBridge || viability.blocking.some((b) => b.address === d.address))));
    groups.push({
      id,
      functions,
      hostBridges: group.devices.filter((d) => d.isBridge).map((d) => d.address),
      viable: viability.viable,
      reservedRegions: group.reservedRegions,
    });
  }
  for (const v of safetyViolations(options.protectedDevices ?? [], toDetach, options.force ?? false)) {
    findings.push({
      kind: 'refusal',
      code: 'UNSAFE_DETACH',
      subject: v.address,
      message: `${v.detail} (rule '${v.rule}')`,
      fix: `${v.override} (only if the host can do without it)`,
    });
  }

  const hostIommu = options.hostIommu ?? assumedHostIommu();
  if (options.hostIommu === undefined && spec.machine === 'q35') {
    findings.push({
      kind: 'note',
      code: 'HOST_IOMMU_ASSUMED',
      subject: 'host IOMMU',
      message: 'limits assumed: 48-bit IOVA, 4 KiB/2 MiB/1 GiB pages, 65535 mappings per container (the kernel reports the real ones once a group is in a container)',
    });
  }
  const guest = guestModelOf(spec, hostIommu);
  const placed = groups.map((g) => ({ group: g.id, functions: g.functions.map((f) => f.address), reservedRegions: g.reservedRegions }));
  const domains: GuestPciDomain[] = spec.machine === 'pseries' ? pseriesDomains(placed) : q35Domains(placed);
  const dmaGroups: DmaGroup[] = groups.map((g) => ({ id: g.id, reservedRegions: g.reservedRegions }));
  const topology = planContainers(guest, dmaGroups, options.memlock);
  const compat = checkCompatibility(guest, hostIommu, dmaGroups, {
    ...(options.memlock ? { memlock: options.memlock } : {}),
    ...(options.spapr ? { spapr: options.spapr } : {}),
  });
  for (const c of compat.findings) {
    findings.push({
      kind: c.severity === 'error' ? 'refusal' : 'warning',
      code: `COMPAT_${c.code}`,
      subject: c.group === undefined ? 'guest' : `group ${c.group}`,
      message: c.message,
      ...(c.fix === undefined ? {} : { fix: c.fix }),
    });
  }

  const policy: DmaPolicy = spec.iommu === 'none' ? 'identity' : spec.iommu === 'spapr-tce' ? 'spapr-tce' : 'shadow';
  const dma: DmaPlan = {
    policy,
    topology,
    ...(guest.iommu.kind === 'spapr-tce' ? { tceWindows: tceWindowsOf(guest, domains) } : {}),
  };
  const backend = chooseBackend(host, spec.machine, options.vmm ?? (() => ({ probeError: 'no QEMU was asked' })));
  const actions = findings.filter((f) => f.kind === 'action' && f.fix !== undefined).map((f) => f.fix!);
  return {
    spec,
    ok: !findings.some((f) => f.kind === 'refusal') && groups.length > 0,
    groups,
    domains,
    guest,
    dma,
    hostIommu,
    compat,
    backend,
    findings,
    actions,
  };
}

/**
 * Each guest PHB starts with the default 32-bit window the machine creates
 * (QEMU's dma_win_addr/dma_win_size); a Linux guest then asks for a 64-bit
 * window at SPAPR_DMA64_START big enough to map all its RAM directly (DDW),
 * with the largest TCE page size offered.
 */
function tceWindowsOf(guest: GuestModel, domains: readonly GuestPciDomain[]): PlannedTceWindows[] {
  if (guest.iommu.kind !== 'spapr-tce') return [];
  const iommu = guest.iommu;
  const ram = guest.memory.regions.reduce((s, r) => s + r.size, 0n);
  const pageShift = Math.max(...iommu.pageShifts);
  return domains
    .filter((d) => d.kind === 'spapr-pci-host-bridge')
    .map((d) => ({
      bridge: d.kind === 'spapr-pci-host-bridge' ? d.bridge.id : '',
      group: d.group,
      windows: [
        { ...iommu.defaultWindow, createdBy: 'machine' as const },
        ...(iommu.ddw ? [{ index: 1 as const, start: SPAPR_DMA64_START, size: nextPow2(ram), pageShift, createdBy: 'guest' as const }] : []),
      ],
    }));
}
