// What a lab profile is: one kind of guest (x86 q35 with VT-d, pseries with
// sPAPR TCE) that the runner boots and whose cases it reports. The runner in
// main.ts knows profiles only through this interface; each profile owns its
// packages, initramfs, QEMU command line and guest topology.

/** Where a profile keeps things and how it talks to the person running it. */
export interface LabContext {
  /** The repository's root (the folder with pnpm-workspace.yaml). */
  readonly repoRoot: string;
  /** Downloads and unpacked packages, kept between runs (`.lab-cache/`). */
  readonly cacheDir: string;
  /** This profile's own output folder (console log, results); emptied before each run. */
  readonly outDir: string;
  /** The node binary the guest runs (the host's, reached over the 9p root). */
  readonly nodePath: string;
  /** How long one guest may run before it is killed and reported as hung. */
  readonly guestTimeoutMs: number;
  /** Progress for a human, printed as TAP comments (`# ...`). */
  log(message: string): void;
}

/** The outcome of one case as the runner reports it in TAP. */
export interface CaseReport {
  /** A sentence about the behaviour, e.g. `overlapping map fails with EEXIST`. */
  readonly name: string;
  readonly ok: boolean;
  /** Set when the case did not run; a skipped case counts as neither pass nor fail. */
  readonly skip?: string;
  /** Lines that explain a failure (both sides of a disagreement, an error). */
  readonly detail?: readonly string[];
}

export interface LabProfile {
  /** Short name used on the command line and in TAP lines: `x86`, `pseries`. */
  readonly name: string;
  /** One line saying what the profile boots and proves. */
  readonly description: string;
  /**
   * Fetches what it needs, boots its guest(s), and returns every case.
   * A failure of the infrastructure itself (a missing package, a guest that
   * hung or panicked) is thrown as a LabError; the runner reports it as a
   * failed case named after the stage, so nothing fails silently.
   */
  run(ctx: LabContext): Promise<readonly CaseReport[]>;
}
