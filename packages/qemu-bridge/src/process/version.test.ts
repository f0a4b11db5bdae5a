import test from 'ava';
import { atLeast, parseQemuRelease, parseQemuVersion, probeQemuVersion, qemuReleaseOf } from './version';

test("QEMU's --version banner gives major.minor", (t) => {
  t.is(parseQemuVersion('QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2~bpo12+1)\nCopyright (c) 2003-2025 Fabrice Bellard\n'), '10.0');
  t.is(parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n'), '7.2');
  t.is(parseQemuVersion('something else\n'), undefined);
});

test('a QEMU binary that is not installed is reported by name, not as a version', (t) => {
  const v = probeQemuVersion('/nonexistent/qemu-system-x86_64');
  t.is(v.qemuVersion, undefined);
  t.is(v.probeError, '/nonexistent/qemu-system-x86_64 is not installed or not on PATH');
});

test("the system's qemu-system-x86_64 answers with its version", (t) => {
  // Runs QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const v = probeQemuVersion('qemu-system-x86_64');
  t.regex(v.qemuVersion ?? '', /^\d+\.\d+$/, v.probeError);
});

test('the banner gives the whole release for the upgrade, a missing micro reading as 0', (t) => {
  t.deepEqual(parseQemuRelease('QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)\n'), { major: 11, minor: 1, micro: 3 });
  t.deepEqual(parseQemuRelease('QEMU emulator version 10.1 (v10.1.0-rc0)\n'), { major: 10, minor: 1, micro: 0 });
  t.true(atLeast({ major: 10, minor: 1, micro: 0 }, { major: 10, minor: 1, micro: 0 }));
  t.false(atLeast({ major: 10, minor: 0, micro: 9 }, { major: 10, minor: 1, micro: 0 }));
});

test('a QEMU whose release cannot be told is refused by name with the reason', (t) => {
  const err = t.throws(() => qemuReleaseOf('/nonexistent/qemu-system-x86_64'));
  t.regex(err.message, /cannot tell which QEMU \/nonexistent\/qemu-system-x86_64 is: .* is not installed or not on PATH/);
});
