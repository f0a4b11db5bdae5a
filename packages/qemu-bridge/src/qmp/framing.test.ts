import test from 'ava';
import { FramingError, JsonMessageDecoder } from './framing';

test('messages split across chunks are decoded once complete', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{"return": {"a"'), []);
  t.deepEqual(d.push(': 1}, "id": "x"}\r\n{"event": "STOP"}\r\n'), [{ return: { a: 1 }, id: 'x' }, { event: 'STOP' }]);
});

test('a pretty-printed message spanning lines is one message', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{\n    "return": [\n        1,\n        2\n    ]\n}\n'), [{ return: [1, 2] }]);
});

test('braces inside strings do not end a message', (t) => {
  const d = new JsonMessageDecoder();
  t.deepEqual(d.push('{"desc": "a } and \\" and {", "x": 1}\r\n'), [{ desc: 'a } and " and {', x: 1 }]);
});

test('a multi-byte character split between chunks survives', (t) => {
  const d = new JsonMessageDecoder();
  const bytes = Buffer.from('{"s": "é"}\n');
  t.deepEqual(d.push(bytes.subarray(0, 8)), []);
  t.deepEqual(d.push(bytes.subarray(8)), [{ s: 'é' }]);
});

test('malformed JSON inside a balanced message throws FramingError', (t) => {
  const d = new JsonMessageDecoder();
  const err = t.throws(() => d.push('{bad json}\r\n'), { instanceOf: FramingError });
  t.regex(err!.message, /^malformed JSON "\{bad json\}"/);
});

test('text between messages that is not an object throws FramingError', (t) => {
  const d = new JsonMessageDecoder();
  t.throws(() => d.push('hello\r\n'), { instanceOf: FramingError, message: 'unexpected "h" between messages (every QMP message is a JSON object)' });
});

test('an unfinished message is reported as pending characters', (t) => {
  const d = new JsonMessageDecoder();
  d.push('{"return": ');
  t.is(d.pendingChars, 11);
});
