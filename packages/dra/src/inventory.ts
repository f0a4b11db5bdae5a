// What this node can offer: one DRA device per IOMMU group that vfiokit's
// managed bind would take (the group is the unit the kernel assigns: a VFIO
// container takes whole groups, vfio_group_ioctl_get_status), and for every
// other group the reason it is held back and the fix. A group is held back
// for exactly the reasons `bindGroup` would refuse it: a safety rule
// (root disk, default route, console, bridge), a probe vfio-pci would fail
// (an SR-IOV PF with VFs enabled), a non-PCI member on a driver, a process
// holding /dev/vfio/N open, no IOMMU, vfio-pci not loaded; and groups with
// nothing a guest could use (bridges only, the chipset's host or ISA bridge).
import {
  assumedHostIommu,
  checkViability,
  describeViolation,
  discoverHost,
  knownProbeRefusal,
  planGroupBind,
  type HostFs,
  type HostModel,
  type IommuGroup,
  type PciDevice,
} from '@vfiokit/core';

/** A DRA attribute value (resource.k8s.io/v1 DeviceAttribute): exactly one field set. */
export type AttributeValue = { readonly int: number } | { readonly bool: boolean } | { readonly string: string };

/** One group offered as one DRA device. */
export interface GroupOffer {
  readonly group: number;
  /** The DRA device name: `group-N`. */
  readonly name: string;
  /** PCI addresses of every function in the group, in address order. */
  readonly addresses: readonly string[];
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

/** A group that is not published, and why. */
export interface WithheldGroup {
  readonly group: number;
  readonly addresses: readonly string[];
  readonly reason: string;
  readonly fix?: string;
}

export interface Inventory {
  readonly offers: readonly GroupOffer[];
  readonly withheld: readonly WithheldGroup[];
}

export interface InventoryOptions {
  /**
   * Groups this driver prepared for a claim: a VMM holding them open is
   * their user, not a reason to withdraw them (the scheduler already counts
   * them as allocated).
   */
  readonly prepared?: ReadonlySet<number>;
}

/** The DRA device name of group N. */
export function deviceNameOf(group: number): string {
  return `group-${group}`;
}

/** The group a DRA device name stands for, or undefined when it is not one of ours. */
export function groupOfDeviceName(name: string): number | undefined {
  const m = /^group-(\d+)$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** resource.k8s.io/v1 limits (k8s.io/api/resource/v1/types.go). */
export const MAX_ATTRIBUTES = 32;
export const MAX_STRING_VALUE = 64;

const hex4 = (n: number) => n.toString(16).padStart(4, '0');
const hex6 = (n: number) => n.toString(16).padStart(6, '0');

/** Read the host and sort its groups into offers and withheld ones. */
export function takeInventory(host: HostFs, options: InventoryOptions = {}): Inventory {
  const model = discoverHost(host);
  const offers: GroupOffer[] = [];
  const withheld: WithheldGroup[] = [];
  const holders = vfioGroupHolders(host);
  const iommufd = host.exists('/dev/iommu');
  for (const group of model.groups) {
    const addresses = group.devices.map((d) => d.address);
    const why = withholdReason(host, model, group, holders.get(group.id), options.prepared?.has(group.id) ?? false);
    if (why) withheld.push({ group: group.id, addresses, ...why });
    else offers.push({ group: group.id, name: deviceNameOf(group.id), addresses, attributes: attributesOf(model, group, iommufd) });
  }
  return { offers, withheld };
}

function withholdReason(
  host: HostFs,
  model: HostModel,
  group: IommuGroup,
  holders: readonly string[] | undefined,
  prepared: boolean,
): { reason: string; fix?: string } | undefined {
  const id = group.id;
  const chipset = group.devices.find((d) => d.classCode >> 8 === 0x0600 || d.classCode >> 8 === 0x0601);
  if (chipset) return { reason: `group ${id} holds ${chipset.address}, the chipset's ${chipset.classCode >> 8 === 0x0600 ? 'host' : 'ISA'} bridge, which the host needs` };
  const endpoints = group.devices.filter((d) => !d.isBridge);
  if (endpoints.length === 0) return { reason: `group ${id} holds only bridges (${group.devices.map((d) => d.address).join(', ')}): nothing a guest could use` };
  if (!model.vfioPciLoaded) return { reason: `vfio-pci is not loaded, so no group can be prepared`, fix: 'modprobe vfio-pci' };
  const plan = planGroupBind(host, model, id, false);
  if (plan.refusals.length > 0) {
    const text = plan.refusals.map((f) => describeViolation(f, group.devices.find((d) => d.address === f.address)?.driver)).join('; ');
    return { reason: `group ${id} is protected: ${text}`, fix: `only 'vfiokit bind ${plan.refusals.map((f) => f.override).join(' ')} ${id}' by hand moves it; the DRA driver never forces a safety rule` };
  }
  for (const d of group.devices) {
    if (d.driver === 'vfio-pci') continue;
    const refusal = knownProbeRefusal(d);
    if (refusal) return { reason: `group ${id}: ${refusal.reason}`, fix: refusal.hint };
  }
  const pci = new Set(group.devices.map((d) => d.address));
  const foreign = checkViability(model, group).blocking.filter((b) => !pci.has(b.address));
  if (foreign.length > 0) {
    return { reason: `group ${id} has non-PCI members on drivers (${foreign.map((b) => `${b.address} on ${b.driver}`).join(', ')}) that vfiokit cannot move`, fix: foreign[0]!.fix };
  }
  if (holders && holders.length > 0 && !prepared) {
    return { reason: `group ${id} is in use: /dev/vfio/${id} is open in ${holders.join(', ')}`, fix: 'stop that process (or detach the device from its VM); the group is published again within one rescan' };
  }
  return undefined;
}

/**
 * The attributes a DeviceClass or a claim selects on with CEL, e.g.
 * `device.attributes["vfiokit.dev"].vendor == "10de"`. Ids are lower-case hex
 * without 0x (as lspci -n shows them). Per-function attributes are
 * `fnI_address`, `fnI_vendor`, `fnI_device`, `fnI_class` for the group's
 * functions in address order, as many as fit the API's 32 per device; a
 * selector on them must allow for their absence
 * (`device.attributes["vfiokit.dev"].?fn1_address.orValue("") == "..."`),
 * since the scheduler fails a pod whose CEL reads a missing key. numaNode is
 * -1 and iovaBits 0 where the kernel does not say.
 */
export function attributesOf(model: HostModel, group: IommuGroup, iommufd: boolean): Record<string, AttributeValue> {
  const a: Record<string, AttributeValue> = {};
  const endpoints = group.devices.filter((d) => !d.isBridge);
  const primary: PciDevice = endpoints[0] ?? group.devices[0]!;
  const spapr = model.iommu.kind === 'spapr-tce';
  a.group = { int: group.id };
  a.functions = { int: group.devices.length };
  a.address = { string: primary.address };
  a.vendor = { string: hex4(primary.vendorId) };
  a.device = { string: hex4(primary.deviceId) };
  a.class = { string: hex6(primary.classCode) };
  putList(a, 'addresses', group.devices.map((d) => d.address));
  putList(a, 'vendors', [...new Set(group.devices.map((d) => hex4(d.vendorId)))]);
  putList(a, 'devices', [...new Set(group.devices.map((d) => `${hex4(d.vendorId)}:${hex4(d.deviceId)}`))]);
  const numa = group.devices.find((d) => d.numaNode !== undefined)?.numaNode;
  // Every attribute but fnI_* is on every device: the scheduler fails a pod
  // whose CEL reads a missing key ("no such key") instead of skipping the device.
  a.numaNode = { int: numa ?? -1 };
  a.iommu = { string: spapr ? 'spapr' : iommufd ? 'iommufd' : 'type1' };
  a.iommuHardware = { string: model.iommu.kind ?? 'unknown' };
  a.iommufd = { bool: iommufd };
  // sPAPR TCE tables take 4 KiB and 64 KiB pages (16 MiB with huge pages);
  // type1 takes what the IOMMU's page tables do: 4 KiB, 2 MiB, 1 GiB on VT-d and AMD-Vi.
  a.pageSizes = { string: spapr ? '4KiB,64KiB,16MiB' : pageSizeList(assumedHostIommu().pageSizes) };
  a.iovaBits = { int: model.iommu.addressWidth ?? 0 };
  a.hasBridge = { bool: group.devices.some((d) => d.isBridge) };
  const perFunction = Math.floor((MAX_ATTRIBUTES - Object.keys(a).length) / 4);
  group.devices.slice(0, perFunction).forEach((d, i) => {
    a[`fn${i}_address`] = { string: d.address };
    a[`fn${i}_vendor`] = { string: hex4(d.vendorId) };
    a[`fn${i}_device`] = { string: hex4(d.deviceId) };
    a[`fn${i}_class`] = { string: hex6(d.classCode) };
  });
  return a;
}

/** A comma-joined list, only when it fits the API's 64-character string limit (fnI_* always carry the parts). */
function putList(a: Record<string, AttributeValue>, name: string, items: readonly string[]): void {
  const text = items.join(',');
  if (text.length <= MAX_STRING_VALUE) a[name] = { string: text };
}

function pageSizeList(bitmap: bigint): string {
  const out: string[] = [];
  for (let bit = 12n; bit < 64n; bit++) {
    if ((bitmap >> bit) & 1n) {
      const size = 1n << bit;
      out.push(size >= 1n << 30n ? `${size >> 30n}GiB` : size >= 1n << 20n ? `${size >> 20n}MiB` : `${size >> 10n}KiB`);
    }
  }
  return out.join(',');
}

/** One pass over /proc: which processes hold /dev/vfio/N open, by group (groupHolders does one group a pass). */
export function vfioGroupHolders(host: HostFs): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const pid of host.list('/proc').filter((n) => /^\d+$/.test(n))) {
    const seen = new Set<number>();
    for (const fd of host.list(`/proc/${pid}/fd`)) {
      const m = /^\/dev\/vfio\/(\d+)$/.exec(host.readLink(`/proc/${pid}/fd/${fd}`) ?? '');
      if (!m || seen.has(Number(m[1]))) continue;
      seen.add(Number(m[1]));
      const comm = host.readText(`/proc/${pid}/comm`)?.trim();
      const list = out.get(Number(m[1])) ?? [];
      list.push(comm ? `${comm} (pid ${pid})` : `pid ${pid}`);
      out.set(Number(m[1]), list);
    }
  }
  return out;
}
