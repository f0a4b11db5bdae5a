// What the lab programs and their unit tests share: the lab guest's edu
// device, and a VFIO call's outcome as one word.
import { labDevice } from '@vfiokit/testkit/lab-guest';
import { VfioError } from '../index';

/** The PCI address of the lab topology's solo edu (inside the lab guest only). */
export const soloBdf = (): string => labDevice('solo').bdf;

/** 'ok', or the VfioError's code (EEXIST, ...), or the text of any other throw. */
export function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof VfioError ? e.code : String(e);
  }
}
