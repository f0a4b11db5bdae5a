import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCpio } from './cpio';

const archive = buildCpio([
  { kind: 'dir', path: 'bin' },
  { kind: 'file', path: 'bin/hello', data: Buffer.from('hi\n'), mode: 0o755 },
  { kind: 'symlink', path: 'bin/sh', target: 'hello' },
  { kind: 'char', path: 'console', major: 5, minor: 1 },
]);

test('the archive starts with the newc magic and ends with the trailer', (t) => {
  t.is(archive.subarray(0, 6).toString('ascii'), '070701');
  t.true(archive.includes(Buffer.from('TRAILER!!!\0')));
});

test('every record is padded to four bytes', (t) => {
  t.is(archive.length % 4, 0);
});

test('a character device carries its major and minor numbers in rdev', (t) => {
  const at = archive.indexOf(Buffer.from('console\0'));
  const header = archive.subarray(at - 110, at).toString('ascii');
  t.is(header.slice(6 + 8, 6 + 16), '00002180'); // S_IFCHR | 0600
  t.is(parseInt(header.slice(6 + 8 * 9, 6 + 8 * 10), 16), 5);
  t.is(parseInt(header.slice(6 + 8 * 10, 6 + 8 * 11), 16), 1);
});

test('GNU cpio unpacks the files and links as written', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cpio-'));
  try {
    const res = spawnSync('cpio', ['-i', '--quiet', '--no-absolute-filenames', '--nonmatching', 'console'], { cwd: dir, input: archive });
    t.falsy(res.error, 'GNU cpio must be installed (apt-get install cpio)');
    t.is(res.status, 0, res.stderr.toString());
    t.is(readFileSync(join(dir, 'bin/hello'), 'utf8'), 'hi\n');
    t.is(statSync(join(dir, 'bin/hello')).mode & 0o777, 0o755);
    t.is(readlinkSync(join(dir, 'bin/sh')), 'hello');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an absolute path is refused', (t) => {
  t.throws(() => buildCpio([{ kind: 'dir', path: '/bin' }]), { message: /must be relative/ });
});
