// Typed QMP events. The data shapes are those of QEMU's qapi/*.json; an event
// this table does not know still arrives, typed as `unknown` data.

export interface QmpTimestamp {
  readonly seconds: number;
  readonly microseconds: number;
}

/** Event name -> the `data` member QEMU sends with it (qapi/*.json). */
export interface QmpEventMap {
  /** qapi/qdev.json: a device (and every child) was unrealized. */
  DEVICE_DELETED: { readonly device?: string; readonly path: string };
  /** qapi/qdev.json (QEMU 6.2+): the guest refused an unplug request. */
  DEVICE_UNPLUG_GUEST_ERROR: { readonly device?: string; readonly path: string };
  /** qapi/run-state.json */
  SHUTDOWN: { readonly guest: boolean; readonly reason: string };
  RESET: { readonly guest: boolean; readonly reason: string };
  STOP: Record<string, never>;
  RESUME: Record<string, never>;
  POWERDOWN: Record<string, never>;
  /** qapi/acpi.json: the guest's _OST answer to an ACPI hot-plug event. */
  ACPI_DEVICE_OST: {
    readonly info: {
      readonly device?: string;
      readonly slot: string;
      readonly 'slot-type': string;
      readonly source: number;
      readonly status: number;
    };
  };
  /** qapi/machine.json: virtio-mem changed its plugged size. */
  MEMORY_DEVICE_SIZE_CHANGE: { readonly id?: string; readonly size: number; readonly 'qom-path': string };
}

export type KnownQmpEventName = keyof QmpEventMap;

export interface QmpEventOf<N extends KnownQmpEventName> {
  readonly name: N;
  readonly data: QmpEventMap[N];
  readonly timestamp: QmpTimestamp;
}

/** Any event, as received. Narrow with `isEvent`. */
export interface QmpEvent {
  readonly name: string;
  readonly data: unknown;
  readonly timestamp: QmpTimestamp;
}

export function isEvent<N extends KnownQmpEventName>(event: QmpEvent, name: N): event is QmpEventOf<N> {
  return event.name === name;
}

// Checks for the members callers rely on. A known event with a wrong shape is
// a protocol violation, not something to pass on half-typed.
const validators: { [N in KnownQmpEventName]?: (data: Record<string, unknown>) => boolean } = {
  DEVICE_DELETED: (d) => typeof d.path === 'string' && (d.device === undefined || typeof d.device === 'string'),
  DEVICE_UNPLUG_GUEST_ERROR: (d) =>
    typeof d.path === 'string' && (d.device === undefined || typeof d.device === 'string'),
  SHUTDOWN: (d) => typeof d.guest === 'boolean' && typeof d.reason === 'string',
  RESET: (d) => typeof d.guest === 'boolean' && typeof d.reason === 'string',
  ACPI_DEVICE_OST: (d) => typeof d.info === 'object' && d.info !== null,
  MEMORY_DEVICE_SIZE_CHANGE: (d) => typeof d.size === 'number' && typeof d['qom-path'] === 'string',
};

/** Builds a QmpEvent from a message that has an `event` member; null when malformed. */
export function parseEvent(message: Record<string, unknown>): QmpEvent | null {
  const name = message.event;
  if (typeof name !== 'string') return null;
  const ts = message.timestamp as Record<string, unknown> | undefined;
  const timestamp: QmpTimestamp =
    ts && typeof ts.seconds === 'number' && typeof ts.microseconds === 'number'
      ? { seconds: ts.seconds, microseconds: ts.microseconds }
      : { seconds: -1, microseconds: -1 };
  const data = message.data === undefined ? {} : message.data;
  const check = validators[name as KnownQmpEventName];
  if (check && (typeof data !== 'object' || data === null || !check(data as Record<string, unknown>))) {
    return null;
  }
  return { name, data, timestamp };
}
