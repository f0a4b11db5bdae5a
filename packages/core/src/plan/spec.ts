// What a user asks for: a guest and the host devices it should get. Plain
// readonly data; the CLI reads it from YAML, a management layer builds it in
// code. `guestSpecProblems` holds the rules that span fields (which IOMMU fits
// which machine), so every caller gets the same answer.

/** QEMU machine types vfiokit plans for. */
export type MachineType = 'q35' | 'pseries';

/** The guest's IOMMU, as the QEMU device (or machine feature) that provides it. */
export type GuestIommuModel = 'none' | 'intel-iommu' | 'virtio-iommu' | 'spapr-tce';

/** A host device named by its PCI address: `0000:01:00.0`. */
export interface AddressSelector {
  readonly address: string;
}

/**
 * A host device named by its IDs: the `index`-th (from 0, in address order)
 * device whose vendor and device IDs match, like `lspci -d 10de:1b80`.
 */
export interface IdSelector {
  readonly vendor: number;
  readonly device: number;
  readonly index: number;
}

export type DeviceSelector = AddressSelector | IdSelector;

export interface GuestSpec {
  readonly name: string;
  /** Guest RAM, bytes. */
  readonly memoryBytes: bigint;
  readonly cpus: number;
  readonly machine: MachineType;
  readonly iommu: GuestIommuModel;
  readonly devices: readonly DeviceSelector[];
}

/** A rule of the spec that is broken, with the field it concerns (`iommu`, `devices[1]`). */
export interface SpecProblem {
  readonly field: string;
  readonly message: string;
}

const PAGE = 4096n;

export function isAddressSelector(s: DeviceSelector): s is AddressSelector {
  return 'address' in s;
}

/** How a selector reads in messages: `0000:01:00.0` or `10de:1b80#1`. */
export function formatSelector(s: DeviceSelector): string {
  if (isAddressSelector(s)) return s.address;
  const id = `${hex4(s.vendor)}:${hex4(s.device)}`;
  return s.index === 0 ? id : `${id}#${s.index}`;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

/**
 * The cross-field rules of a guest spec. Empty when the spec is sound.
 * - pseries guests always translate DMA through sPAPR TCE (QEMU's spapr_phb
 *   has no bypass for VFIO devices), and only they can: `spapr-tce` on q35 or
 *   `intel-iommu`/`virtio-iommu`/`none` on pseries is a contradiction.
 * - RAM must be whole 4 KiB pages, as every VFIO map is.
 */
export function guestSpecProblems(spec: GuestSpec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  if (spec.machine === 'pseries' && spec.iommu !== 'spapr-tce') {
    problems.push({
      field: 'iommu',
      message: `a pseries guest always translates DMA through sPAPR TCE windows; set iommu: spapr-tce (got ${spec.iommu})`,
    });
  }
  if (spec.machine === 'q35' && spec.iommu === 'spapr-tce') {
    problems.push({
      field: 'iommu',
      message: 'spapr-tce exists only on machine: pseries; on q35 use none, intel-iommu or virtio-iommu',
    });
  }
  if (spec.memoryBytes <= 0n || spec.memoryBytes % PAGE !== 0n) {
    problems.push({ field: 'memory', message: `guest RAM must be a positive whole number of 4 KiB pages (got ${spec.memoryBytes} bytes)` });
  }
  const seen = new Map<string, number>();
  spec.devices.forEach((d, i) => {
    const key = formatSelector(d);
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push({ field: `devices[${i}]`, message: `${key} is listed twice (first at devices[${first}])` });
    } else seen.set(key, i);
  });
  return problems;
}
