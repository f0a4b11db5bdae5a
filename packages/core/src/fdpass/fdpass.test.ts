import test from 'ava';
import { closeSync, openSync } from 'node:fs';
import { sendWithFds, FdPassError } from './index';

test('a descriptor that is not a socket is refused with ENOTSOCK and says so', (t) => {
  const file = openSync('/dev/null', 'r');
  try {
    const err = t.throws(() => sendWithFds(file, Buffer.from('x'), [file]), { instanceOf: FdPassError });
    t.is(err!.code, 'ENOTSOCK');
    t.is(err!.errno, 88);
    t.regex(err!.message, /^sendmsg with 1 fd\(s\) on socket fd \d+ failed: it is not a socket$/);
  } finally {
    closeSync(file);
  }
});

test('more descriptors than QEMU takes in one message are refused with EINVAL before any send', (t) => {
  const err = t.throws(() => sendWithFds(0, Buffer.from('x'), new Array(17).fill(0)), { instanceOf: FdPassError });
  t.is(err!.code, 'EINVAL');
  t.is(err!.message, '17 fds in one message: QEMU takes 1 to 16');
});
