// Splits a QMP byte stream into JSON values. QEMU ends each message with
// "\r\n" (monitor_puts turns "\n" into "\r\n"), but with `-qmp ...,pretty=on`
// one message spans many lines; so, like QEMU's own json-streamer.c, this
// counts brackets outside strings instead of splitting on newlines.
import { StringDecoder } from 'node:string_decoder';

/** Upper bound for one message; query-qmp-schema of QEMU 10 is about 200 KiB. */
export const MAX_MESSAGE_CHARS = 64 * 1024 * 1024;

export class FramingError extends Error {}

export class JsonMessageDecoder {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  /** Index in `buffer` up to which the scanner has looked. */
  private scanned = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;

  /** Feeds bytes; returns each complete message, parsed. Throws FramingError. */
  push(chunk: Buffer | string): unknown[] {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const out: unknown[] = [];
    const buf = this.buffer;
    let i = this.scanned;
    for (; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) this.inString = false;
        continue;
      }
      if (this.depth === 0) {
        if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
        if (c !== 0x7b /* { */) {
          throw new FramingError(
            `unexpected ${JSON.stringify(buf[i])} between messages (every QMP message is a JSON object)`,
          );
        }
        this.start = i;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth < 0) throw new FramingError(`unbalanced ${JSON.stringify(buf[i])}`);
        if (this.depth === 0) {
          const text = buf.slice(this.start, i + 1);
          try {
            out.push(JSON.parse(text));
          } catch (err) {
            throw new FramingError(`malformed JSON ${abbreviate(text)}: ${(err as Error).message}`);
          }
          this.start = -1;
        }
      }
    }
    // Keep only the unfinished message.
    if (this.depth === 0 && !this.inString) {
      this.buffer = '';
      this.scanned = 0;
    } else {
      this.buffer = buf.slice(this.start);
      this.scanned = this.buffer.length;
      this.start = 0;
      if (this.buffer.length > MAX_MESSAGE_CHARS) {
        throw new FramingError(`a message exceeds ${MAX_MESSAGE_CHARS} characters`);
      }
    }
    return out;
  }

  /** Characters of a message that has begun but not ended. */
  get pendingChars(): number {
    return this.buffer.length;
  }
}

export function encodeMessage(message: object): string {
  return JSON.stringify(message) + '\r\n';
}

export function abbreviate(text: string, max = 120): string {
  return text.length <= max ? JSON.stringify(text) : JSON.stringify(text.slice(0, max)) + '...';
}
