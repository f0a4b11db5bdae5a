import test from 'ava';
import { addonProblems, compareGlibc, parseElf } from './elf';
import { tarballProblems, type Manifest, type TarEntry } from './pack';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aptListsKey, debianNodeRoot, dependencyClosure } from './sysroot';
import { TARGETS } from './targets';

const AARCH64 = TARGETS.find((t) => t.triple === 'aarch64-unknown-linux-gnu')!;
const PPC64LE = TARGETS.find((t) => t.triple === 'powerpc64le-unknown-linux-gnu')!;

// readelf's output for an aarch64 addon, cut to the lines that matter.
const HEADER = `ELF Header:
  Class:                             ELF64
  Data:                              2's complement, little endian
  Type:                              DYN (Shared object file)
  Machine:                           AArch64
  Flags:                             0x0
`;
const DYNAMIC = ` 0x0000000000000001 (NEEDED)             Shared library: [libgcc_s.so.1]
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
`;
const VERSIONS = `Version symbols section '.gnu.version' contains 127 entries:
 Addr: 0x0000000000001ad8  Offset: 0x001ad8  Link: 4 (.dynsym)
Version needs section '.gnu.version_r' contains 2 entries:
  0x0000: Version: 1  File: libc.so.6  Cnt: 3
  0x0010:   Name: GLIBC_2.17  Flags: none  Version: 5
  0x0020:   Name: GLIBC_2.34  Flags: none  Version: 4
  0x0030:   Name: GLIBC_2.28  Flags: none  Version: 3
`;
const SYMBOLS = `Symbol table '.dynsym' contains 3 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND napi_create_object
   126: 00000000000d9020  9559 FUNC    GLOBAL DEFAULT   15 napi_register_module_v1
`;

test('readelf output gives the machine, the libraries, the glibc versions oldest first and the defined symbols', (t) => {
  const elf = parseElf(HEADER, DYNAMIC, VERSIONS, SYMBOLS);
  t.is(elf.machine, 'AArch64');
  t.deepEqual(elf.needed, ['libgcc_s.so.1', 'libc.so.6']);
  t.deepEqual(elf.glibcVersions, ['GLIBC_2.17', 'GLIBC_2.28', 'GLIBC_2.34']);
  t.deepEqual(elf.exports, ['napi_register_module_v1']);
  t.deepEqual(addonProblems(elf, AARCH64), []);
});

test('glibc versions compare by number: 2.34 is newer than 2.4', (t) => {
  t.true(compareGlibc('GLIBC_2.34', 'GLIBC_2.4') > 0);
  t.is(compareGlibc('GLIBC_2.17', 'GLIBC_2.17'), 0);
});

test('an addon for the wrong machine, without glibc or without napi entry point is refused, each reason said', (t) => {
  const elf = parseElf(HEADER.replace('AArch64', 'Advanced Micro Devices X86-64'), '', '', SYMBOLS.replace('napi_register_module_v1', 'something_else'));
  t.deepEqual(addonProblems(elf, AARCH64), [
    'machine is Advanced Micro Devices X86-64, not AArch64',
    'it does not link glibc dynamically (NEEDED: none): a static C runtime (+crt-static) in a dlopen()ed addon',
    'it needs no GLIBC_* symbol version, so it was not linked against glibc',
    'it does not export napi_register_module_v1, the entry point Node calls',
  ]);
});

test("a ppc64le function's local entry offset does not hide it from the exports", (t) => {
  const symbols = `   141: 00000000000bf740 10424 FUNC    GLOBAL DEFAULT [<localentry>: 8]    10 napi_register_module_v1
   122: 0000000000000000     0 NOTYPE  GLOBAL DEFAULT  UND napi_create_object
`;
  t.deepEqual(parseElf(HEADER, DYNAMIC, VERSIONS, symbols).exports, ['napi_register_module_v1']);
});

test('a ppc64le addon must say ELFv2 in its flags', (t) => {
  const header = HEADER.replace('AArch64', 'PowerPC64');
  t.deepEqual(addonProblems(parseElf(header.replace('0x0', '0x2, abiv2'), DYNAMIC, VERSIONS, SYMBOLS), PPC64LE), []);
  t.deepEqual(addonProblems(parseElf(header.replace('0x0', '0x1, abiv1'), DYNAMIC, VERSIONS, SYMBOLS), PPC64LE), [
    'flags 0x1, abiv1 do not say ELFv2 (abiv2), the ABI of little-endian POWER',
  ]);
});

const MANIFEST: Manifest = {
  name: '@vfiokit/core',
  version: '0.1.0',
  license: 'MIT',
  main: 'dist/index.js',
  engines: { node: '>=20.17' },
  dependencies: { '@vfiokit/vfio-core': '0.1.0' },
};
const ENTRIES: TarEntry[] = [
  { path: 'package/package.json', size: 900 },
  { path: 'package/README.md', size: 1000 },
  { path: 'package/LICENSE', size: 1076 },
  { path: 'package/dist/index.js', size: 400 },
  { path: 'package/dist/index.d.ts', size: 300 },
];
const VERSIONS_OF = new Map([
  ['@vfiokit/core', '0.1.0'],
  ['@vfiokit/vfio-core', '0.1.0'],
]);

test('a tarball of compiled code, declarations, README and LICENSE with real versions passes', (t) => {
  t.deepEqual(tarballProblems(ENTRIES, MANIFEST, MANIFEST, VERSIONS_OF), []);
});

test('sources, maps, tests, lab programs and benches in a tarball are each named', (t) => {
  const extra = ['src/index.ts', 'dist/index.js.map', 'dist/host/bind.test.js', 'dist/vfio/lab/support.js', 'dist/dma/bench/main.js', 'dist/host/host.lab.js'];
  const problems = tarballProblems([...ENTRIES, ...extra.map((p) => ({ path: `package/${p}`, size: 1 }))], MANIFEST, MANIFEST, VERSIONS_OF);
  t.deepEqual(problems, [
    'src/index.ts is a TypeScript source',
    'src/index.ts is a source, test, lab, bench or test-data folder',
    'dist/index.js.map is a build by-product',
    'dist/host/bind.test.js is a test or lab program',
    'dist/vfio/lab/support.js is a source, test, lab, bench or test-data folder',
    'dist/dma/bench/main.js is a source, test, lab, bench or test-data folder',
    'dist/host/host.lab.js is a test or lab program',
  ]);
});

test('workspace:* left in a packed manifest, a dependency on testkit and a wrong version are refused', (t) => {
  const manifest: Manifest = { ...MANIFEST, dependencies: { '@vfiokit/vfio-core': 'workspace:*', '@vfiokit/testkit': '0.1.0' }, optionalDependencies: { '@vfiokit/core': '0.0.9' } };
  t.deepEqual(tarballProblems(ENTRIES, manifest, MANIFEST, VERSIONS_OF), [
    'dependencies.@vfiokit/vfio-core is still workspace:*',
    "dependencies.@vfiokit/vfio-core is workspace:*, not the workspace's 0.1.0",
    'dependencies has @vfiokit/testkit, which is private and for tests only',
    "optionalDependencies.@vfiokit/core is 0.0.9, not the workspace's 0.1.0",
  ]);
});

test('a tarball without LICENSE text, README or its main file is refused', (t) => {
  const entries = ENTRIES.filter((e) => !/README|index\.js/.test(e.path)).map((e) => (e.path === 'package/LICENSE' ? { ...e, size: 0 } : e));
  t.deepEqual(tarballProblems(entries, MANIFEST, MANIFEST, VERSIONS_OF), ['no LICENSE text', 'no README.md', 'main dist/index.js is not in the tarball']);
});

test("apt-cache depends --recurse gives each real package once, sorted, without virtual ones", (t) => {
  const out = 'nodejs\n  Depends: libc6\n  Depends: libnode108\nlibnode108\n  Depends: libc6\n<nodejs-abi-108>\nlibc6\n  Depends: libgcc-s1\nlibgcc-s1\nlibc6\n';
  t.deepEqual(dependencyClosure(out), ['libc6', 'libgcc-s1', 'libnode108', 'nodejs']);
});


test("a Node root is found again without asking apt while the private apt's package indexes are unchanged, and resolved again once they change", (t) => {
  // privateApt copies the machine's Debian sources into the private apt.
  if (!existsSync('/etc/apt/sources.list.d/debian.sources')) return t.pass('no Debian sources on this machine');
  const cache = mkdtempSync(join(tmpdir(), 'vfiokit-release-test-'));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));
  const lists = join(cache, 'apt-arm64', 'lists');
  mkdirSync(lists, { recursive: true });
  const index = join(lists, 'deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages');
  writeFileSync(index, 'Package: nodejs\n');
  const root = join(cache, 'roots', 'node-arm64-kept');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(cache, 'roots', 'node-arm64.json'), JSON.stringify({ lists: aptListsKey(join(cache, 'apt-arm64')), root }));
  t.is(debianNodeRoot(cache, 'arm64', () => {}), root);
  // An apt-get update rewrites the index: the kept answer no longer holds, and
  // this made-up index has no real nodejs to resolve.
  utimesSync(index, new Date(), new Date(Date.now() + 5000));
  t.throws(() => debianNodeRoot(cache, 'arm64', () => {}));
});
