/**
 * A VFIO call failed: what every vfio-core call throws. `code` is the
 * errno's name (`EEXIST`, `EINVAL`, ...), `errno` its number, `ioctl` the
 * call (or the operation: `mmap`, `pread`, `argument`), `object` what it was
 * issued on (`container of groups [11]`, a device's address); a batch also
 * names the failing `entryIndex`. `message` names the call, the object, the
 * cause and the fix; `hint` repeats the fix alone when there is one.
 */
export declare class VfioError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly ioctl: string;
  readonly object: string;
  readonly entryIndex?: number;
  /** What was being asked, when the call alone does not say (a bad argument's reason). */
  readonly detail?: string;
  readonly hint?: string;
}
