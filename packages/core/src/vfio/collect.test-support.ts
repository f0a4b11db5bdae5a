// What the tests of objects that live across calls share: a full
// collection, with napi's deferred finalizers run, and the count of this
// process's descriptors that a leak would grow. ava runs this package with
// `node --expose-gc` (nodeArguments in package.json).
import { readdirSync } from 'node:fs';

/** How many descriptors this process has open (/proc/self/fd). */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Collects, lets a turn of the loop run finalizers, and collects again. */
export async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc (ava nodeArguments in package.json)');
  // napi runs a wrapped object's finalizer after the collection that found
  // it dead, so a second collection after a turn of the loop frees what it held.
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
}
