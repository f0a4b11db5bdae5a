// The loader's choices for machines this one is not, from the facts it reads
// (platform, CPU, byte order, C library). The real thing, an npm install
// without the binary package, is checked by the release check
// (packages/testkit/src/release).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { describeMachine, locateBinding, NativeBindingError } = require('./loader');

const manifest = require('./package.json');
const DIR = '/nowhere/vfio-core';

/** The disk and node_modules the loader sees: `files` exist, `packages` are installed (name -> version). */
function io(files, packages) {
  return {
    exists: (file) => files.includes(file),
    installedVersion: (name) => packages[name],
    resolve: (name) => (files.includes(`/node_modules/${name}/index.node`) ? `/node_modules/${name}/index.node` : undefined),
  };
}

test('x86_64, aarch64 and little-endian POWER Linux with glibc are the three published targets', () => {
  const machines = [
    { platform: 'linux', arch: 'x64', endianness: 'LE', libc: 'gnu' },
    { platform: 'linux', arch: 'arm64', endianness: 'LE', libc: 'gnu' },
    { platform: 'linux', arch: 'ppc64', endianness: 'LE', libc: 'gnu' },
  ].map((facts) => describeMachine(facts));
  assert.deepEqual(
    machines.map((m) => [m.triple, m.platform]),
    [
      ['x86_64-unknown-linux-gnu', 'linux-x64-gnu'],
      ['aarch64-unknown-linux-gnu', 'linux-arm64-gnu'],
      ['powerpc64le-unknown-linux-gnu', 'linux-ppc64-gnu'],
    ],
  );
  assert.deepEqual(manifest.napi.targets, machines.map((m) => m.triple));
  // Each has its package among the optional dependencies, at the same version.
  for (const m of machines) assert.ok(`${manifest.name}-${m.platform}` in manifest.optionalDependencies, m.platform);
});

test('a binary built in the clone, beside the loader, wins over the package', () => {
  const machine = describeMachine({ platform: 'linux', arch: 'x64', libc: 'gnu' });
  const where = locateBinding(manifest, DIR, machine, io([`${DIR}/vfio-core.linux-x64-gnu.node`], {}));
  assert.equal(where.file, `${DIR}/vfio-core.linux-x64-gnu.node`);
});

test('without a local binary the installed package for the triple is loaded', () => {
  const machine = describeMachine({ platform: 'linux', arch: 'arm64', libc: 'gnu' });
  const where = locateBinding(manifest, DIR, machine, io(['/node_modules/@vfiokit/vfio-core-linux-arm64-gnu/index.node'], { '@vfiokit/vfio-core-linux-arm64-gnu': manifest.version }));
  assert.equal(where.file, '/node_modules/@vfiokit/vfio-core-linux-arm64-gnu/index.node');
  assert.equal(where.triple, 'aarch64-unknown-linux-gnu');
});

test('a missing binary package is named with the triple and the command that installs it', () => {
  const machine = describeMachine({ platform: 'linux', arch: 'ppc64', endianness: 'LE', libc: 'gnu' });
  const err = locateBinding(manifest, DIR, machine, io([], {}));
  assert.ok(err instanceof NativeBindingError);
  assert.equal(err.code, 'NATIVE_MISSING');
  assert.equal(err.triple, 'powerpc64le-unknown-linux-gnu');
  assert.equal(err.packageName, '@vfiokit/vfio-core-linux-ppc64-gnu');
  assert.equal(err.message, '@vfiokit/vfio-core has no binary for this machine\'s target powerpc64le-unknown-linux-gnu: the package that holds it, @vfiokit/vfio-core-linux-ppc64-gnu, is not installed');
  assert.ok(err.hint.startsWith(`install it: 'npm install @vfiokit/vfio-core-linux-ppc64-gnu@${manifest.version}'`), err.hint);
});

test('a binary package installed without its binary is reported as missing, not as a failed require', () => {
  const machine = describeMachine({ platform: 'linux', arch: 'x64', libc: 'gnu' });
  const err = locateBinding(manifest, DIR, machine, io([], { '@vfiokit/vfio-core-linux-x64-gnu': manifest.version }));
  assert.equal(err.code, 'NATIVE_MISSING');
  assert.match(err.message, /the package @vfiokit\/vfio-core-linux-x64-gnu is installed but its binary is not in it$/);
});

test('a binary package of another version is refused: the addon and its JavaScript are built together', () => {
  const machine = describeMachine({ platform: 'linux', arch: 'x64', libc: 'gnu' });
  const err = locateBinding(manifest, DIR, machine, io([], { '@vfiokit/vfio-core-linux-x64-gnu': '0.0.1' }));
  assert.equal(err.code, 'NATIVE_VERSION_MISMATCH');
  assert.equal(err.message, `@vfiokit/vfio-core ${manifest.version} cannot use the binary for x86_64-unknown-linux-gnu in @vfiokit/vfio-core-linux-x64-gnu 0.0.1: the two are built together`);
  assert.equal(err.hint, `install the matching one: 'npm install @vfiokit/vfio-core-linux-x64-gnu@${manifest.version}'`);
});

test('musl, big-endian POWER and other CPUs are named as unsupported triples, with how to build one', () => {
  const cases = [
    [{ platform: 'linux', arch: 'x64', libc: 'musl' }, 'x86_64-unknown-linux-musl'],
    [{ platform: 'linux', arch: 'ppc64', endianness: 'BE', libc: 'gnu' }, 'powerpc64-unknown-linux-gnu'],
    [{ platform: 'linux', arch: 'riscv64', libc: 'gnu' }, 'riscv64gc-unknown-linux-gnu'],
  ];
  for (const [facts, triple] of cases) {
    const err = locateBinding(manifest, DIR, describeMachine(facts), io([], {}));
    assert.equal(err.code, 'NATIVE_UNSUPPORTED', triple);
    assert.equal(err.triple, triple);
    assert.equal(err.message, `@vfiokit/vfio-core has no binary for this machine's target ${triple}: binaries are published for x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu, powerpc64le-unknown-linux-gnu only`);
    assert.match(err.hint, new RegExp(`^build one from a clone of vfiokit with Rust's ${triple} target`));
  }
});

test('a machine that is not Linux is told vfiokit runs on Linux only', () => {
  const err = locateBinding(manifest, DIR, describeMachine({ platform: 'darwin', arch: 'arm64' }), io([], {}));
  assert.equal(err.code, 'NATIVE_UNSUPPORTED');
  assert.equal(err.triple, 'aarch64-apple-darwin');
  assert.match(err.message, /runs on Linux only$/);
});

test('this machine is described as the binary built here names it', () => {
  // The build (napi build --platform) names the file after the host's
  // platform; the loader must compute the same name from the running process.
  const machine = describeMachine();
  const { existsSync } = require('node:fs');
  assert.ok(existsSync(`${__dirname}/vfio-core.${machine.platform}.node`), `no vfio-core.${machine.platform}.node here: run pnpm build`);
});
