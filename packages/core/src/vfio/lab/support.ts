// What the lab programs and their unit tests share: the lab guest's edu
// device, and a VFIO call's outcome as one word.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { VfioError } from '../index';

/** The PCI address of the lab topology's solo edu (inside the lab guest only). */
export function soloBdf(): string {
  const file = process.env.VFIOKIT_LAB_TOPOLOGY_FILE;
  assert.ok(file, 'VFIOKIT_LAB_TOPOLOGY_FILE is not set: this case runs only inside the lab guest');
  const t = JSON.parse(fs.readFileSync(file, 'utf8')) as { devices: { role: string; bdf: string }[] };
  const d = t.devices.find((x) => x.role === 'solo');
  assert.ok(d, 'the lab topology has no solo edu device');
  return d.bdf;
}

/** 'ok', or the VfioError's code (EEXIST, ...), or the text of any other throw. */
export function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof VfioError ? e.code : String(e);
  }
}
