// Small readers that check a QMP reply has the shape QEMU's schema promises,
// so a wrong reply fails here with a clear message instead of deep in a caller.
import { QmpReplyError } from '../errors';

export type Json = Record<string, unknown>;

export function obj(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new QmpReplyError(`${what}: expected a JSON object, got ${JSON.stringify(value)?.slice(0, 80)}`);
  }
  return value as Json;
}

export function arr(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) {
    throw new QmpReplyError(`${what}: expected a JSON array, got ${JSON.stringify(value)?.slice(0, 80)}`);
  }
  return value;
}

export function num(o: Json, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new QmpReplyError(`${what}: member '${key}' should be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function str(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') {
    throw new QmpReplyError(`${what}: member '${key}' should be a string, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function optStr(o: Json, key: string, what: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, what);
}

export function bool(o: Json, key: string, what: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') {
    throw new QmpReplyError(`${what}: member '${key}' should be a boolean, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * An exact unsigned 64-bit quantity. JSON.parse yields doubles, so a value
 * past 2^53 has already lost bits: refuse it rather than pass a wrong address on.
 */
export function u64(o: Json, key: string, what: string): bigint {
  const v = num(o, key, what);
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new QmpReplyError(`${what}: member '${key}' = ${v} is not an exact unsigned integer below 2^53`);
  }
  return BigInt(v);
}
