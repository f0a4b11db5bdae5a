// The --json documents of every command, as versioned schemas. Scripts
// written against version 1 keep working: within a version fields are only
// added (each object allows more than it lists), never removed, renamed or
// retyped; a change that breaks that is version 2, in a folder of its own.
//
// The zod schemas here are the source; `schemas/v1/*.schema.json` in the
// package are generated from them (JSON Schema 2020-12, `pnpm --filter
// @vfiokit/cli schemas`), and json-schema.test.ts checks both that the
// published files are what these generate and that every command's output
// validates against its schema.
import { z } from 'zod';

export const JSON_SCHEMA_VERSION = 1;
/** A URN, not a URL: the schemas are files in this package (`@vfiokit/cli/schemas/v1/NAME.schema.json`), not a web address. */
export const SCHEMA_BASE = `urn:vfiokit:cli:schemas:v${JSON_SCHEMA_VERSION}`;

/** An object that lists what it guarantees and may carry more (added in later releases). */
const obj = <T extends z.ZodRawShape>(shape: T) => z.looseObject(shape);
/** A big integer (address, size) as vfiokit prints it in JSON: a hex string. */
const hexBig = z.string().regex(/^0x[0-9a-f]+$/);
const address = z.string().regex(/^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/);
const id4 = z.string().regex(/^[0-9a-f]{4}$/);
const nullable = <T extends z.ZodType>(t: T) => t.nullable();

const device = obj({
  address,
  vendorId: id4,
  deviceId: id4,
  classCode: z.string().regex(/^[0-9a-f]{6}$/),
  names: obj({}),
  driver: nullable(z.string()),
  driverOverride: nullable(z.string()),
  iommuGroup: nullable(z.number().int()),
  numaNode: nullable(z.number().int()),
  isBridge: z.boolean(),
  bootVga: z.boolean(),
  upstream: nullable(z.string()),
  physicalFunction: nullable(z.string()),
  resetMethods: nullable(z.array(z.string())),
  bars: z.array(obj({ index: z.number().int(), start: hexBig, size: hexBig, kind: z.string() })),
});

const blocking = obj({ address: z.string(), driver: z.string(), fix: z.string() });
const safetyFinding = obj({ address, rule: z.string(), detail: z.string(), override: z.string() });
const groupState = z.enum(['ready', 'viable', 'movable', 'protected', 'fixed-first', 'host-bridge-only']);
const iommu = obj({ present: z.boolean(), units: z.array(z.string()), unsafeNoIommuMode: z.boolean() });
const driverChange = obj({ address, from: z.string().optional(), to: z.string().optional() });
const bindResult = obj({
  group: z.number().int(),
  plan: obj({ group: z.number().int(), devices: z.array(obj({ address, action: z.enum(['bind', 'already-bound', 'leave', 'detach']), driver: z.string().optional() })), refusals: z.array(safetyFinding) }),
  changes: z.array(driverChange),
  steps: z.array(z.string()),
  dryRun: z.boolean(),
  stillBlocking: z.array(blocking),
});
const unbindResult = obj({
  group: z.number().int(),
  releases: z.array(obj({ address, to: z.string().optional(), recorded: z.boolean() })),
  changes: z.array(driverChange),
  steps: z.array(z.string()),
  dryRun: z.boolean(),
});
const persistMethod = z.enum(['udev', 'modprobe']);
const configFile = obj({ file: z.string(), text: z.string() });
const hostIommuInfo = obj({ pageSizes: hexBig, iovaRanges: z.array(obj({ start: hexBig, size: hexBig })), dmaEntryLimit: z.number().int() });
const placement = obj({ id: z.string(), host: address, group: z.number().int(), bus: z.string(), slot: z.number().int(), function: z.number().int() });

/** Every document, by the name of its file: `<name>.schema.json`. */
export const SCHEMAS = {
  error: obj({
    error: obj({ code: z.string(), message: z.string(), hint: nullable(z.string()), exitCode: z.number().int().min(1), details: z.array(z.string()) }),
  }).describe('any command that fails, on stderr'),
  ls: obj({
    platform: z.string(),
    kernelRelease: nullable(z.string()),
    iommu,
    vfioPciLoaded: z.boolean(),
    groups: z.array(
      obj({
        id: z.number().int(),
        name: nullable(z.string()),
        viable: z.boolean(),
        blocking: z.array(blocking),
        state: groupState,
        devices: z.array(device.extend({ atBoot: nullable(obj({ driver: z.literal('vfio-pci'), method: persistMethod, file: z.string() })) })),
      }),
    ),
    ungrouped: z.array(device),
  }).describe('vfiokit ls --json'),
  show: obj({
    device: device.optional(),
    safety: z.array(safetyFinding).optional(),
    group: nullable(obj({ id: z.number().int(), viability: obj({ viable: z.boolean(), blocking: z.array(blocking), summary: z.string() }), reservedRegions: z.array(obj({ start: hexBig, end: hexBig, type: z.string() })), safety: z.array(safetyFinding), devices: z.array(device) })),
  }).describe('vfiokit show --json: a device (with its group) or a group'),
  check: obj({
    ok: z.boolean(),
    devices: z.array(obj({ address, group: nullable(z.number().int()), ok: z.boolean(), checks: z.array(obj({ check: z.string(), ok: z.boolean(), message: z.string(), fix: z.string().optional() })) })),
    memlock: z.unknown(),
  }).describe('vfiokit check --json'),
  bind: obj({ dryRun: z.boolean(), groups: z.array(bindResult) }).describe('vfiokit bind --json'),
  unbind: obj({ dryRun: z.boolean(), groups: z.array(unbindResult) }).describe('vfiokit unbind --json'),
  persist: obj({
    dryRun: z.boolean(),
    groups: z.array(obj({ group: z.number().int(), method: persistMethod, why: z.string(), devices: z.array(obj({ address, vendorId: z.number().int(), deviceId: z.number().int(), driver: z.string().optional(), module: z.string().optional() })), files: z.array(configFile), notes: z.array(z.string()) })),
  }).describe('vfiokit persist --json'),
  unpersist: obj({
    dryRun: z.boolean(),
    groups: z.array(obj({ group: z.number().int(), removed: z.array(obj({ address, method: persistMethod, file: z.string() })), files: z.array(configFile) })),
  }).describe('vfiokit unpersist --json'),
  plan: obj({
    spec: obj({ name: z.string(), machine: z.enum(['q35', 'pseries']), memoryBytes: hexBig, cpus: z.number().int(), iommu: z.string() }),
    ok: z.boolean(),
    groups: z.array(obj({ id: z.number().int(), functions: z.array(obj({ address, role: z.enum(['requested', 'companion']) })), hostBridges: z.array(z.string()), viable: z.boolean() })),
    domains: z.array(obj({ kind: z.enum(['pcie-root-port', 'spapr-pci-host-bridge']), group: z.number().int() })),
    dma: obj({ policy: z.enum(['identity', 'shadow', 'spapr-tce']), topology: obj({ pinnedBytes: hexBig, requiredMemlock: hexBig, fitsMemlock: z.boolean() }) }),
    findings: z.array(obj({ kind: z.enum(['refusal', 'action', 'warning', 'note']), code: z.string(), subject: z.string(), message: z.string(), fix: z.string().optional() })),
    backend: obj({ backend: z.enum(['iommufd', 'container']), reasons: z.array(z.string()).min(1) }),
    actions: z.array(z.string()),
    qemu: nullable(z.array(z.string())),
  }).describe('vfiokit plan --json (or --format json)'),
  'plan-qemu-args': obj({ argv: z.array(z.string()).min(1), placements: z.array(placement) }).describe('vfiokit plan --format qemu-args --json'),
  run: obj({
    guest: z.string(),
    groups: z.array(z.number().int()),
    bound: z.array(bindResult),
    memlock: obj({ requiredBytes: hexBig, raiseTo: obj({ soft: hexBig, hard: hexBig.optional() }).optional(), reason: z.string(), applied: z.boolean() }),
    qemu: obj({ argv: z.array(z.string()).min(1), pid: nullable(z.number().int()), exitCode: nullable(z.number().int()), signal: nullable(z.string()), stderr: z.string() }),
    resets: z.array(obj({ address, done: z.boolean(), methods: z.array(z.string()), reason: z.string().optional(), step: z.string().optional() })),
    restored: z.array(unbindResult),
  }).describe('vfiokit run --json'),
  upgrade: obj({
    guest: z.string(),
    old: obj({ pid: z.number().int(), version: z.string(), exitCode: nullable(z.number().int()) }),
    new: obj({ pid: z.number().int(), version: z.string(), binary: z.string(), argv: z.array(z.string()).min(1), status: z.string() }),
    machine: z.string(),
    downtimeMs: nullable(z.number()),
    pauseUpperBoundMs: z.number(),
  }).describe('vfiokit upgrade --json'),
  map: obj({
    backend: z.enum(['kernel', 'mock']),
    groups: z.array(z.number().int()),
    host: hostIommuInfo,
    regions: z.number().int(),
    bytes: hexBig,
    calls: z.number().int(),
    ioctls: z.number().int(),
    entries: z.number().int(),
    planMs: z.number(),
    mapMs: z.number(),
    unmapCalls: z.number().int(),
    unmapIoctls: z.number().int(),
    unmapMs: z.number(),
  }).describe('vfiokit map --json'),
  'trace-replay': obj({
    file: z.string(),
    ops: z.number().int(),
    guestMapsUnmaps: z.number().int(),
    groups: z.array(z.number().int()),
    ram: hexBig,
    calls: z.number().int(),
    ioctls: z.number().int(),
    peakEntries: z.number().int(),
    finalEntries: z.record(z.string(), z.number().int()),
    seconds: z.number(),
  }).describe('vfiokit trace replay --json'),
  attach: obj({ attached: z.array(obj({ id: z.string(), rootPort: z.string(), function: z.number().int(), guestVisible: z.boolean() })) }).describe('vfiokit attach --json'),
  detach: obj({ detached: z.array(z.string()) }).describe('vfiokit detach --json'),
  demo: obj({ ok: z.boolean(), qemu: z.boolean(), seconds: z.number() }).describe('vfiokit demo --json'),
  completion: obj({ shell: z.enum(['bash', 'zsh', 'fish']), script: z.string() }).describe('vfiokit completion --json'),
} as const;

export type SchemaName = keyof typeof SCHEMAS;

/** The JSON Schema (2020-12) of one document, with its versioned $id. */
export function jsonSchemaOf(name: SchemaName): Record<string, unknown> {
  const body = z.toJSONSchema(SCHEMAS[name], { target: 'draft-2020-12', io: 'output' }) as Record<string, unknown>;
  const { $schema, ...rest } = body;
  return { $schema, $id: `${SCHEMA_BASE}:${name}`, title: `vfiokit ${name} document, version ${JSON_SCHEMA_VERSION}`, ...rest };
}

/** Check a document against its schema; throws a ZodError naming every mismatch. */
export function assertDocument(name: SchemaName, document: unknown): void {
  SCHEMAS[name].parse(document);
}
