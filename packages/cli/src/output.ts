// Where a command's results go. In --json mode stdout carries exactly one JSON
// document and nothing else, so scripts can pipe it; progress bars only ever
// draw on a terminal's stderr.
import { SingleBar, Presets } from 'cli-progress';
import { CliError } from './errors';

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

  error(err: CliError): void {
    // A message that lists thousands of items (every colliding RAM region of a
    // huge layout) is cut for the terminal; --json keeps all of it.
    const LIMIT = 2000;
    const text = err.message.length > LIMIT ? `${err.message.slice(0, LIMIT)}... (${err.message.length - LIMIT} more characters; --json prints all)` : err.message;
    if (this.json) {
      const body = { error: { code: err.code, message: err.message, hint: err.hint ?? null, exitCode: err.exitCode } };
      this.stderr.write(`${JSON.stringify(body)}\n`);
    } else {
      this.stderr.write(`vfiokit: ${text}\n`);
      if (err.hint) this.stderr.write(`hint: ${err.hint}\n`);
    }
    if (this.debug) {
      const cause = err.cause instanceof Error ? err.cause : err;
      this.stderr.write(`${cause.stack ?? String(cause)}\n`);
    }
  }
}

/** BigInt (IOVAs, sizes) prints as a hex string in JSON, the way kernel interfaces show addresses. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16)}` : value;
}
