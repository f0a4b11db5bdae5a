import test from 'ava';
import { FramingError, JsonMessageDecoder } from './framing';

test('messages split across chunks are decoded once complete', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{"return": {"a"').messages, []);
  t.deepEqual(d.push(': 1}, "id": "x"}\r\n{"event": "STOP"}\r\n').messages, [{ return: { a: 1 }, id: 'x' }, { event: 'STOP' }]);
});

test('a pretty-printed message spanning lines is one message', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{\n    "return": [\n        1,\n        2\n    ]\n}\n').messages, [{ return: [1, 2] }]);
});

test('braces inside strings do not end a message', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{"desc": "a } and \\" and {", "x": 1}\r\n').messages, [{ desc: 'a } and " and {', x: 1 }]);
});

test('a multi-byte character split between chunks survives', (t) => {
  const d = new JsonMessageDecoder();
  const bytes = Buffer.from('{"s": "é"}\n');
  t.deepEqual(d.push(bytes.subarray(0, 8)).messages, []);
  t.deepEqual(d.push(bytes.subarray(8)).messages, [{ s: 'é' }]);
});

test('malformed JSON inside a balanced message is a FramingError', (t) => {
  const d = new JsonMessageDecoder();
  const err = d.push('{bad json}\r\n').error;
  t.true(err instanceof FramingError);
  t.regex(err!.message, /^malformed JSON "\{bad json\}"/);
});

test('text between messages that is not an object is a FramingError', (t) => {
  const d = new JsonMessageDecoder();
  t.is(d.push('hello\r\n').error!.message, 'unexpected "h" between messages (every QMP message is a JSON object)');
});

test('an unfinished message is reported as pending bytes', (t) => {
  const d = new JsonMessageDecoder();
  d.push('{"return": ');
  t.is(d.pendingBytes, 11);
});

test('a 64 MiB message is scanned once and copied once: framing is linear in its size', (t) => {
  const size = 64 * 1024 * 1024;
  const d = new JsonMessageDecoder();
  const head = '{"return": "';
  const tail = '", "id": "x"}\r\n';
  const chunk = Buffer.alloc(64 * 1024, 'a');
  let fed = d.push(head).messages.length;
  for (let sent = head.length + tail.length; sent < size; sent += chunk.length) {
    fed += d.push(sent + chunk.length <= size ? chunk : chunk.subarray(0, size - sent)).messages.length;
  }
  const last = d.push(tail);
  t.is(fed, 0);
  t.is(last.messages.length, 1);
  t.is(((last.messages[0] as { return: string }).return).length, size - head.length - tail.length);
  // Every byte is looked at once and copied once (into the message's buffer);
  // a decoder that rescans or re-joins its buffer per chunk does n²/chunk work.
  t.is(d.stats.bytesScanned, size);
  t.true(d.stats.bytesCopied <= size, `copied ${d.stats.bytesCopied} bytes for a ${size}-byte message`);
});

test('a message over the size limit is refused as it arrives, in a sentence with both sizes', (t) => {
  const d = new JsonMessageDecoder({ maxMessageBytes: 1024 });
  t.is(d.push('{"return": "' + 'x'.repeat(1000)).error, null);
  const r = d.push('x'.repeat(100));
  t.true(r.error instanceof FramingError);
  t.is(r.error!.message, 'a message longer than the limit of 1024 bytes (1112 bytes so far, not yet complete)');
});

test('a reply followed by garbage in one chunk yields the reply, then the error', (t) => {
  const d = new JsonMessageDecoder();
  const r = d.push('{"return": {}, "id": "a"}\r\nhello\r\n');
  t.deepEqual(r.messages, [{ return: {}, id: 'a' }]);
  t.is(r.error!.message, 'unexpected "h" between messages (every QMP message is a JSON object)');
});

test('a pretty-printed message with nested objects is not taken for a truncated one', (t) => {
  const d = new JsonMessageDecoder();
  const pretty = JSON.stringify({ return: [{ a: { b: [1, { c: 2 }] } }], id: 'x' }, null, 4).replace(/\n/g, '\r\n');
  const r = d.push(pretty + '\r\n');
  t.is(r.error, null);
  t.deepEqual(r.messages, [{ return: [{ a: { b: [1, { c: 2 }] } }], id: 'x' }]);
});
