// Where a command's results go. In --json mode stdout carries exactly one JSON
// document and nothing else, so scripts can pipe it; progress bars only ever
// draw on a terminal's stderr.
import { SingleBar, Presets } from 'cli-progress';
import { CliError, reportOf, type ErrorReport } from './errors';

export interface Progress {
  update(done: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update() {}, stop() {} };

export class Output {
  constructor(
    readonly json: boolean,
    readonly debug: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** A line of human output; silent in --json mode, where `result` says it all. */
  line(text = ''): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** The command's result: JSON in --json mode, otherwise the text from `render`. */
  result(value: unknown, render: () => string): void {
    if (this.json) this.printJson(value);
    else {
      const text = render();
      if (text.length > 0) this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }

  /** A JSON document on stdout whatever the mode (`--format json`). */
  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
  }

  /** A note about what is happening, for people; stderr so it never pollutes results. */
  note(text: string): void {
    if (!this.json) this.stderr.write(`${text}\n`);
  }

  /** A progress bar over `total` units, or nothing when stderr is not a terminal or in --json mode. */
  progress(label: string, total: number): Progress {
    if (this.json || !this.stderr.isTTY || total <= 0) return NO_PROGRESS;
    const bar = new SingleBar(
      { format: `${label} [{bar}] {percentage}% {value}/{total}`, stream: this.stderr, hideCursor: true, clearOnComplete: true },
      Presets.shades_classic,
    );
    bar.start(total, 0);
    return { update: (done) => bar.update(done), stop: () => bar.stop() };
  }

  /** Prints what was thrown, as `reportOf` reads it; returns the report (for its exit code). */
  error(thrown: unknown): ErrorReport {
    const err = reportOf(thrown);
    if (this.json) {
      const body = { error: { code: err.code, message: err.message, hint: err.hint ?? null, exitCode: err.exitCode, details: err.details } };
      this.stderr.write(`${JSON.stringify(body)}\n`);
    } else {
      this.stderr.write(errorText(err));
    }
    if (this.debug) {
      const shown = err.error instanceof CliError && err.error.cause instanceof Error ? err.error.cause : err.error;
      this.stderr.write(`${shown instanceof Error ? (shown.stack ?? String(shown)) : String(shown)}\n`);
    }
    return err;
  }
}

/** Detail lines a terminal shows under an error; --json carries every one. */
export const SHOWN_DETAILS = 5;

/**
 * An error for a terminal: the one-line summary, the first few details, the
 * hint. A message is one line by contract; should one from below run long,
 * it is cut here rather than flooding the terminal (--json keeps it whole).
 */
export function errorText(err: ErrorReport): string {
  const LIMIT = 400;
  const first = err.message.split('\n')[0]!;
  const summary = first.length > LIMIT ? `${first.slice(0, LIMIT)}... (--json prints all of it)` : first;
  const lines = [`vfiokit: ${summary}`];
  for (const d of err.details.slice(0, SHOWN_DETAILS)) lines.push(`  ${d.length > LIMIT ? `${d.slice(0, LIMIT)}...` : d}`);
  if (err.details.length > SHOWN_DETAILS) lines.push(`  ... and ${err.details.length - SHOWN_DETAILS} more (--json lists them all)`);
  if (err.hint) lines.push(`hint: ${err.hint}`);
  return `${lines.join('\n')}\n`;
}

/** BigInt (IOVAs, sizes) prints as a hex string in JSON, the way kernel interfaces show addresses. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16)}` : value;
}
