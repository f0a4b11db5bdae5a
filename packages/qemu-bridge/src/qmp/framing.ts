// Splits a QMP byte stream into JSON values. QEMU ends each message with
// "\r\n" (monitor_puts turns "\n" into "\r\n"), but with `-qmp ...,pretty=on`
// one message spans many lines; so, like QEMU's own json-streamer.c, this
// counts brackets outside strings instead of splitting on newlines.
//
// Cost is linear in the bytes received: each byte is scanned once, in the
// chunk it came in (QMP's structural characters are ASCII, and no byte of a
// multi-byte UTF-8 character is below 0x80, so scanning bytes is exact), and
// a message's chunks are joined and decoded once, when it is complete. The
// former decoder appended each chunk to one string and re-read it, which V8
// flattens in full on every read: quadratic (a 40 MB reply took 16 s).

/**
 * Upper bound for one message, in bytes. QEMU 10's query-qmp-schema is about
 * 200 KiB; the bound only stops a peer from making this process buffer
 * without end, and stays well below V8's longest string (2^29 - 24 chars).
 */
export const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

export class FramingError extends Error {}

export interface DecoderOptions {
  /** Default MAX_MESSAGE_BYTES. */
  readonly maxMessageBytes?: number;
}

/** Messages complete in one push, and the error that stopped decoding, if any. */
export interface DecodeResult {
  readonly messages: unknown[];
  /** After an error the decoder is unusable: the stream cannot be resynchronised. */
  readonly error: FramingError | null;
}

/** Work done so far, for tests and benchmarks of the decoder's cost. */
export interface DecoderStats {
  /** Bytes the bracket scanner looked at. */
  bytesScanned: number;
  /** Bytes copied to join the chunks of a message that spans several. */
  bytesCopied: number;
}

const LF = 0x0a;
const CR = 0x0d;

export class JsonMessageDecoder {
  readonly stats: DecoderStats = { bytesScanned: 0, bytesCopied: 0 };
  private readonly maxMessageBytes: number;
  /** Pieces of the message that has begun but not ended. */
  private parts: Buffer[] = [];
  private partBytes = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The previous byte outside strings was a line end, inside a message. */
  private atLineStart = false;
  private failed: FramingError | null = null;

  constructor(options: DecoderOptions = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  }

  /** Feeds bytes; returns each message completed by them, parsed, and the error that stopped decoding. */
  push(chunk: Buffer | string): DecodeResult {
    const messages: unknown[] = [];
    if (this.failed) return { messages, error: this.failed };
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let start = this.depth > 0 ? 0 : -1; // where the current message begins in buf
    let i = 0;
    const fail = (message: string): DecodeResult => {
      this.failed = new FramingError(message);
      this.parts = [];
      return { messages, error: this.failed };
    };
    for (; i < buf.length; i++) {
      const c = buf[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) this.inString = false;
        else if (c === LF || c === CR) {
          // JSON forbids raw control characters in strings (RFC 8259 7) and
          // QEMU escapes them (qobject/qjson.c to_json): a line that ends
          // inside a string is a message cut short, and what follows is the
          // next message, which bracket counting alone would swallow.
          this.stats.bytesScanned += i + 1;
          return fail(`a truncated message: a line ended inside a string in ${abbreviate(this.pendingText(buf, start, i))}`);
        }
        continue;
      }
      if (this.depth === 0) {
        if (c === 0x20 || c === 0x09 || c === LF || c === CR) continue;
        if (c !== 0x7b /* { */) {
          this.stats.bytesScanned += i + 1;
          return fail(`unexpected ${JSON.stringify(String.fromCharCode(c))} between messages (every QMP message is a JSON object)`);
        }
        start = i;
      } else if (this.atLineStart && c === 0x7b) {
        // QEMU prints nested values indented with pretty=on
        // (qobject/qjson.c json_pretty_newline) and nothing but a message's
        // end on one line without it: a "{" in column 0 is a new message.
        this.stats.bytesScanned += i + 1;
        return fail(
          `a truncated message: a new message began at the start of a line inside ${abbreviate(this.pendingText(buf, start, i))}`,
        );
      }
      if (c === LF || c === CR) {
        this.atLineStart = true;
        continue;
      }
      this.atLineStart = false;
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth < 0) {
          this.stats.bytesScanned += i + 1;
          return fail(`unbalanced ${JSON.stringify(String.fromCharCode(c))}`);
        }
        if (this.depth === 0) {
          const text = this.take(buf, start, i + 1);
          start = -1;
          try {
            messages.push(JSON.parse(text));
          } catch (err) {
            this.stats.bytesScanned += i + 1;
            return fail(`malformed JSON ${abbreviate(text)}: ${(err as Error).message}`);
          }
        }
      }
    }
    this.stats.bytesScanned += buf.length;
    if (start >= 0) {
      const piece = buf.subarray(start);
      this.parts.push(piece);
      this.partBytes += piece.length;
      if (this.partBytes > this.maxMessageBytes) {
        return fail(
          `a message longer than the limit of ${this.maxMessageBytes} bytes (${this.partBytes} bytes so far, not yet complete)`,
        );
      }
    }
    return { messages, error: null };
  }

  /** Bytes of a message that has begun but not ended. */
  get pendingBytes(): number {
    return this.partBytes;
  }

  /** The complete message ending at `end` in `buf`, joined with its earlier chunks. */
  private take(buf: Buffer, start: number, end: number): string {
    const last = buf.subarray(start, end);
    let text: string;
    if (this.parts.length === 0) {
      text = last.toString('utf8');
    } else {
      this.parts.push(last);
      const joined = Buffer.concat(this.parts, this.partBytes + last.length);
      this.stats.bytesCopied += joined.length;
      text = joined.toString('utf8');
    }
    this.parts = [];
    this.partBytes = 0;
    this.atLineStart = false;
    return text;
  }

  /** The start of the unfinished message, for error messages (at most 1 KiB of it). */
  private pendingText(buf: Buffer, start: number, end: number): string {
    const first = this.parts.length > 0 ? this.parts[0]! : buf.subarray(Math.max(start, 0), end);
    return first.subarray(0, 1024).toString('utf8').replace(/[\r\n]+$/, '');
  }
}

export function encodeMessage(message: object): string {
  return JSON.stringify(message) + '\r\n';
}

export function abbreviate(text: string, max = 120): string {
  return text.length <= max ? JSON.stringify(text) : JSON.stringify(text.slice(0, max)) + '...';
}
