// Finds out, before acting, whether this QEMU can do what a plan needs:
// commands and events from query-qmp-schema, device types from
// qom-list-types, vfio-pci's properties from device-list-properties.
import { QemuUnsupportedError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';
import { deviceListProperties, qomListTypes, queryQmpSchema, queryVersion, type QemuVersion } from './queries';

/** QOM type names, as -device takes them. */
export const DeviceType = {
  vfioPci: 'vfio-pci',
  pcieRootPort: 'pcie-root-port',
  intelIommu: 'intel-iommu',
  /** The PCI transport of virtio-iommu, which q35 needs (virtio-iommu-device is the bare device). */
  virtioIommu: 'virtio-iommu-pci',
  spaprPciHostBridge: 'spapr-pci-host-bridge',
} as const;

export interface QemuCapabilities {
  readonly version: QemuVersion;
  readonly commands: ReadonlySet<string>;
  /** Commands whose schema says `allow-oob: true`. */
  readonly oobCommands: ReadonlySet<string>;
  readonly events: ReadonlySet<string>;
  /** Every non-abstract device type this binary can create. */
  readonly deviceTypes: ReadonlySet<string>;
  /** vfio-pci's properties (host, sysfsdev, x-vga, ...); empty when vfio-pci is absent. */
  readonly vfioPciProperties: ReadonlySet<string>;
  /** Properties of each device type of `DeviceType` this binary has (intel-iommu: caching-mode, intremap, ...). */
  readonly deviceProperties: ReadonlyMap<string, ReadonlySet<string>>;
}

export async function probeCapabilities(qmp: QmpExecutor): Promise<QemuCapabilities> {
  const version = await queryVersion(qmp);
  const schema = await queryQmpSchema(qmp);
  const types = await qomListTypes(qmp, { implements: 'device', abstract: false });
  const deviceTypes = new Set(types.map((t) => t.name));
  const deviceProperties = new Map<string, ReadonlySet<string>>();
  for (const type of Object.values(DeviceType)) {
    if (deviceTypes.has(type)) deviceProperties.set(type, new Set((await deviceListProperties(qmp, type)).map((p) => p.name)));
  }
  const vfioPciProperties = deviceProperties.get(DeviceType.vfioPci) ?? new Set<string>();
  return {
    version,
    commands: new Set(schema.commands.keys()),
    oobCommands: new Set([...schema.commands.values()].filter((c) => c.allowOob).map((c) => c.name)),
    events: schema.events,
    deviceTypes,
    vfioPciProperties,
    deviceProperties,
  };
}

export interface QemuRequirements {
  readonly deviceTypes?: readonly string[];
  readonly vfioPciProperties?: readonly string[];
  /** Properties other device types must have, e.g. { 'intel-iommu': ['caching-mode'] }. */
  readonly deviceProperties?: Readonly<Record<string, readonly string[]>>;
  readonly commands?: readonly string[];
  readonly events?: readonly string[];
}

/** What `caps` lacks of `needs`, as readable items ('device type intel-iommu', ...). */
export function missingCapabilities(caps: QemuCapabilities, needs: QemuRequirements): string[] {
  const missing: string[] = [];
  for (const t of needs.deviceTypes ?? []) if (!caps.deviceTypes.has(t)) missing.push(`device type ${t}`);
  for (const p of needs.vfioPciProperties ?? []) {
    if (!caps.vfioPciProperties.has(p)) missing.push(`vfio-pci property ${p}`);
  }
  for (const [type, props] of Object.entries(needs.deviceProperties ?? {})) {
    const have = caps.deviceProperties.get(type);
    if (!have) continue; // the missing type itself is reported above
    for (const p of props) if (!have.has(p)) missing.push(`${type} property ${p}`);
  }
  for (const c of needs.commands ?? []) if (!caps.commands.has(c)) missing.push(`command ${c}`);
  for (const e of needs.events ?? []) if (!caps.events.has(e)) missing.push(`event ${e}`);
  return missing;
}

/** Throws QemuUnsupportedError naming everything `caps` lacks. */
export function requireCapabilities(caps: QemuCapabilities, needs: QemuRequirements): void {
  const missing = missingCapabilities(caps, needs);
  if (missing.length === 0) return;
  const v = caps.version;
  throw new QemuUnsupportedError(
    missing,
    `QEMU ${v.major}.${v.minor}.${v.micro}${v.package ? ` (${v.package})` : ''} lacks ${missing.join(', ')}; ` +
      `use a QEMU built with these devices (Debian: qemu-system-x86 for q35, qemu-system-ppc for pseries)`,
  );
}
