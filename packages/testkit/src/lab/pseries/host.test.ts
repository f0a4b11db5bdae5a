import test from 'ava';
import { backportsStanza, KERNEL_PATTERN } from './host';

test('the backports source reuses the URI and key of the machine bookworm entry', (t) => {
  const debian = 'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n';
  t.is(
    backportsStanza([debian]),
    'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
  );
});

test('a one-line bookworm source gives a backports stanza too', (t) => {
  t.is(backportsStanza(['deb http://deb.example/debian bookworm main\n']), 'Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm-backports\nComponents: main\n');
});

test('a machine without a bookworm source gets no guess', (t) => {
  t.is(backportsStanza(['Types: deb\nURIs: http://x\nSuites: trixie\n']), undefined);
});

test('the kernel pattern takes any 6.12 ABI and leaves out the 64k and debug builds', (t) => {
  t.true(KERNEL_PATTERN.test('linux-image-6.12.95+deb12-powerpc64le'));
  t.true(KERNEL_PATTERN.test('linux-image-6.12.117+deb12-powerpc64le'));
  t.false(KERNEL_PATTERN.test('linux-image-6.12.95+deb12-powerpc64le-64k'));
  t.false(KERNEL_PATTERN.test('linux-image-6.12.95+deb12-powerpc64le-dbg'));
});
