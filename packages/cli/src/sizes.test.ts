import test from 'ava';
import { parseSize, readSize } from './sizes';
import { CliError } from './errors';

const bytes = (t: string) => {
  const r = readSize(t);
  return 'bytes' in r ? r.bytes : r.problem;
};

test('a binary suffix means the same with or without iB', (t) => {
  t.is(bytes('4G'), 4n << 30n);
  t.is(bytes('4GiB'), 4n << 30n);
  t.is(bytes('4 GiB'), 4n << 30n);
  t.is(bytes('512m'), 512n << 20n);
  t.is(bytes('2T'), 2n << 40n);
});

test('a plain number is bytes, and so is a B suffix', (t) => {
  t.is(bytes('4096'), 4096n);
  t.is(bytes('4096B'), 4096n);
});

test('a fraction is taken when it comes to whole bytes', (t) => {
  t.is(bytes('1.5G'), 3n << 29n);
  t.is(bytes('0.5K'), 512n);
  t.is(bytes('1.0001K'), '"1.0001K" is not a whole number of bytes');
});

test('GB is refused as ambiguous rather than guessed', (t) => {
  t.is(bytes('4GB'), '"4GB" is ambiguous (GB is 10^9 bytes to a disk vendor, 2^30 to QEMU); write 4G or 4GiB');
});

test('a bad size names the option and the grammar', (t) => {
  const err = t.throws(() => parseSize('lots', '--memory'), { instanceOf: CliError });
  t.is(err.message, '--memory lots: "lots" is not a size such as 4G, 4GiB, 1.5G, 512M or a number of bytes');
  t.is(err.exitCode, 4);
});
