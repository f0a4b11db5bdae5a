// The one error base of @vfiokit/core. Every area of core throws a subclass of
// it, so a caller (the CLI above all) can tell core's errors from everything
// else, read a stable `code` without importing each subclass, and show the
// `hint` as the thing to do next.

/** Options every core error accepts beside its code and message. */
export interface VfiokitErrorOptions {
  /** One sentence the user can act on: the command to run, the file to edit. */
  readonly hint?: string;
  /** The lower-level error this one explains (an errno from a sysfs write, say). */
  readonly cause?: unknown;
  /**
   * The items a one-line message summarises (every colliding region of a
   * layout), for output that lists them all (the CLI's --json).
   */
  readonly details?: readonly string[];
}

/**
 * Base of every error core throws.
 *
 * - `code` is stable and machine-readable (`HOST_GROUP_NOT_VIABLE`): scripts and
 *   the CLI's exit codes match on it, so it never changes once published.
 * - `message` names the object, the cause and the fix, as one sentence:
 *   `group 12 is not viable: 0000:01:00.1 is bound to snd_hda_intel; run
 *   'vfiokit bind 0000:01:00.1' or unbind it first`.
 * - `hint` repeats the fix on its own when there is one, for output that
 *   shows it apart from the message.
 */
export class VfiokitError extends Error {
  readonly hint?: string;
  readonly details: readonly string[];

  constructor(
    readonly code: string,
    message: string,
    options: VfiokitErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    if (options.hint !== undefined) this.hint = options.hint;
    this.details = options.details ?? [];
  }
}

/** True for any error core threw, whatever its subclass. */
export function isVfiokitError(err: unknown): err is VfiokitError {
  return err instanceof VfiokitError;
}
