// The lab runner's one error class. `code` is stable so main.ts (and a
// person reading CI output) can tell a missing tool from a hung guest.

export type LabErrorCode =
  | 'MISSING_TOOL' // a host program the lab needs is not installed
  | 'MISSING_PACKAGE' // a Debian package could not be found or downloaded
  | 'BAD_PACKAGE' // a package unpacked but lacks what the lab needs from it
  | 'GUEST_TIMEOUT' // the guest did not power off in time and was killed
  | 'GUEST_FAILED' // the guest's own setup (modules, bind, mounts) failed
  | 'BAD_RESULTS'; // the guest's results are missing or malformed

export class LabError extends Error {
  readonly code: LabErrorCode;

  constructor(code: LabErrorCode, message: string) {
    super(message);
    this.name = 'LabError';
    this.code = code;
  }
}
