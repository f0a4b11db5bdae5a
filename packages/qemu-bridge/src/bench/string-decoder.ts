// The decoder qemu-bridge had before issue 15, kept only as the bench's
// reference: it appends each chunk to one string and reads it with
// charCodeAt, which makes V8 flatten the whole concatenation on every push.
import { StringDecoder } from 'node:string_decoder';

export class StringJsonDecoder {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  private scanned = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;

  push(chunk: Buffer): unknown[] {
    this.buffer += this.decoder.write(chunk);
    const out: unknown[] = [];
    const buf = this.buffer;
    let i = this.scanned;
    for (; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x22) this.inString = false;
        continue;
      }
      if (this.depth === 0) {
        if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
        this.start = i;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          out.push(JSON.parse(buf.slice(this.start, i + 1)));
          this.start = -1;
        }
      }
    }
    if (this.depth === 0 && !this.inString) {
      this.buffer = '';
      this.scanned = 0;
    } else {
      this.buffer = buf.slice(this.start);
      this.scanned = this.buffer.length;
      this.start = 0;
    }
    return out;
  }
}
