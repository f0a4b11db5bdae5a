// `pnpm release:check`: vfiokit as npm users get it, checked end to end.
//
//   1. vfio-core's addon built for every published triple (x86_64 natively,
//      aarch64 and ppc64le with Debian's cross toolchains) into its binary
//      package, each checked with readelf;
//   2. each addon loaded and run: on x86_64 by this Node, on aarch64 and
//      ppc64le by Debian's Node for that architecture under qemu-user; each
//      answers the mock cases (mock-cases.ts) exactly as x86_64's does;
//   3. every publishable package packed (pnpm pack) and its tarball checked;
//   4. the tarballs installed with plain npm into an empty project outside
//      the clone, and the installed command and library run; then an install
//      without this machine's binary package, whose error must name the
//      triple and the package.
//
// Prints TAP (`# pass N` / `# fail N`, which scripts/count-results.mjs
// counts) and exits 1 on any failure. The scratch projects live in one
// temporary folder, removed at the end; Debian's packages for qemu-user are
// kept in ${VFIOKIT_CACHE:-~/.cache/vfiokit}/release.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CaseReport } from '../lab/profile';
import { formatTap } from '../lab/tap';
import { buildAddon } from './build';
import { addonProblems, inspectElf } from './elf';
import { describeRun, LOAD_SCRIPT, MAP_SCRIPT, npmInstall, run, userProject } from './install';
import { humanSize, listTarball, packPackage, publishablePackages, tarballManifest, tarballProblems } from './pack';
import { debianNodeRoot, releaseCacheDir } from './sysroot';
import { TARGETS, type Target } from './targets';

const QEMU_TIMEOUT_MS = 900_000;

function log(message: string): void {
  process.stdout.write(`# ${message}\n`);
}

const cases: CaseReport[] = [];
function report(name: string, problems: readonly string[]): boolean {
  cases.push(problems.length === 0 ? { name, ok: true } : { name, ok: false, detail: problems });
  return problems.length === 0;
}
/** Runs `check`; a throw is the case's failure, with its message. */
function attempt<T>(name: string, check: () => T): T | undefined {
  try {
    return check();
  } catch (err) {
    report(name, [err instanceof Error ? err.message : String(err)]);
    return undefined;
  }
}

/** The mock cases' lines from one run of mock-cases.js, without the closing line (which names the CPU). */
function caseLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => l.startsWith('{"case":'));
}

function runMockCases(repoRoot: string, cacheDir: string, target: Target, addon: string): { lines: string[]; problems: string[]; how: string } {
  const script = join(__dirname, 'mock-cases.js');
  let argv: string[];
  let how: string;
  if (target.qemu === undefined) {
    argv = [process.execPath, script, addon];
    how = `Node ${process.version}`;
  } else {
    const qemu = spawnSync('sh', ['-c', `command -v ${target.qemu}`], { encoding: 'utf8' });
    if (qemu.status !== 0) return { lines: [], problems: [`${target.qemu} is not installed: apt-get install qemu-user (scripts/install.sh does it)`], how: target.qemu };
    const root = debianNodeRoot(cacheDir, target.debianArch, log);
    argv = [target.qemu, '-L', root, join(root, 'usr', 'bin', 'node'), script, addon];
    how = `Debian's ${target.debianArch} Node under ${target.qemu}`;
  }
  log(`${target.triple}: ${argv.join(' ')}`);
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: repoRoot, encoding: 'utf8', timeout: QEMU_TIMEOUT_MS, maxBuffer: 16 << 20 });
  const lines = caseLines(r.stdout ?? '');
  const problems: string[] = [];
  if (r.status !== 0) problems.push(...describeRun(r));
  const end = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  if (end !== JSON.stringify({ end: target.nodeArch })) problems.push(`the run did not end on ${target.nodeArch} (last line: ${end.slice(0, 200)})`);
  return { lines, problems, how };
}

function checkTargets(repoRoot: string, cacheDir: string): void {
  let reference: string[] | undefined;
  for (const target of TARGETS) {
    const addon = attempt(`${target.triple}: vfio-core's addon builds (napi build --target ${target.triple})`, () => buildAddon(repoRoot, target, log));
    if (addon === undefined) continue;
    report(`${target.triple}: vfio-core's addon builds (napi build --target ${target.triple})`, []);
    const elf = inspectElf(addon);
    const glibc = elf.glibcVersions.at(-1) ?? 'none';
    log(`${target.triple}: ${humanSize(statSync(addon).size)}, ${elf.machine}, ${elf.flags}, NEEDED ${elf.needed.join(' ')}, newest glibc symbol ${glibc}`);
    report(`${target.triple}: the addon is a shared object for ${target.elf.machine}, linked against glibc (it needs ${glibc}), exporting napi_register_module_v1`, addonProblems(elf, target));

    const name = (how: string) => `${target.triple}: the addon loads in ${how} and answers the mock cases${target.qemu ? ' as on x86_64' : ''}`;
    const ran = attempt(name('Node'), () => runMockCases(repoRoot, cacheDir, target, addon));
    if (ran === undefined) continue;
    const problems = [...ran.problems];
    if (ran.lines.length === 0) problems.push('no case answered');
    if (target.qemu === undefined) {
      reference = ran.lines;
      // Every case must run to its end (a case's own refusals are inside its result).
      for (const line of ran.lines) if (!line.includes('"saw":{"ok":')) problems.push(`a case threw: ${line.slice(0, 300)}`);
    } else if (reference === undefined) {
      problems.push('no x86_64 answers to compare with (its addon did not build or run)');
    } else {
      const skipped: string[] = [];
      reference.forEach((want, i) => {
        const got = ran.lines[i];
        // See MockCase.selfMemory: qemu-user has no process_vm_readv/writev.
        if (want.includes('"selfMemory":true')) {
          skipped.push((JSON.parse(want) as { case: string }).case);
          return;
        }
        if (got !== want) problems.push(`case ${i + 1} differs`, `  x86_64: ${want.slice(0, 400)}`, `  ${target.nodeArch}: ${(got ?? '(no answer)').slice(0, 400)}`);
      });
      if (ran.lines.length > reference.length) problems.push(`${ran.lines.length - reference.length} more answers than x86_64 gave`);
      for (const c of skipped) {
        cases.push({ name: `${target.triple}: under ${target.qemu}: ${c}`, ok: true, skip: `${target.qemu} does not implement process_vm_readv/writev (ENOSYS), which the mock's DMA uses to reach this process's memory` });
      }
    }
    report(name(ran.how), problems);
  }
}

function checkPackages(repoRoot: string, scratch: string): Map<string, string> {
  const tarballs = new Map<string, string>();
  const dest = join(scratch, 'tarballs');
  mkdirSync(dest);
  const packages = publishablePackages(repoRoot);
  const versions = new Map(packages.map((p) => [p.manifest.name, p.manifest.version]));
  const sizes: string[] = [];
  for (const pkg of packages) {
    const name = `${pkg.manifest.name}@${pkg.manifest.version}: its tarball holds compiled code, declarations, README and LICENSE only, and a manifest with real versions`;
    const file = attempt(name, () => packPackage(pkg, dest));
    if (file === undefined) continue;
    tarballs.set(pkg.manifest.name, file);
    const entries = listTarball(file);
    const manifest = tarballManifest(file);
    const problems = tarballProblems(entries, manifest, pkg.manifest, versions);
    const target = TARGETS.find((t) => pkg.manifest.name.endsWith(`-${t.platform}`));
    if (target !== undefined) {
      const binary = `package/vfio-core.${target.platform}.node`;
      if (!entries.some((e) => e.path === binary)) problems.push(`it does not hold ${binary}`);
      if (manifest.cpu?.[0] !== target.nodeArch || manifest.os?.[0] !== 'linux' || manifest.libc?.[0] !== 'glibc') problems.push(`os/cpu/libc are ${manifest.os}/${manifest.cpu}/${manifest.libc}, not linux/${target.nodeArch}/glibc`);
    }
    sizes.push(`${pkg.manifest.name}: ${humanSize(statSync(file).size)} packed, ${humanSize(entries.reduce((n, e) => n + e.size, 0))} unpacked, ${entries.length} files`);
    report(name, problems);
  }
  log('tarball sizes:');
  for (const s of sizes) log(`  ${s}`);
  return tarballs;
}

function checkInstall(scratch: string, tarballs: Map<string, string>): void {
  const host = TARGETS.find((t) => t.nodeArch === process.arch && t.qemu === undefined);
  if (host === undefined) {
    report('the install check runs on x86_64', [`this machine is ${process.arch}`]);
    return;
  }
  const binaryPackage = `@vfiokit/vfio-core-${host.platform}`;
  const userFacing = [...tarballs.entries()].filter(([name]) => !TARGETS.some((t) => name.endsWith(`-${t.platform}`))).map(([, file]) => file);
  const cli = tarballManifest(tarballs.get('@vfiokit/cli')!);

  const project = userProject(join(scratch, 'user'));
  const toolchain = run(project, ['sh', '-c', 'for t in pnpm cargo rustc; do command -v $t; done; true']);
  const installName = `npm installs the packed packages and the ${host.triple} binary into an empty project, with no pnpm, cargo or rustc on PATH`;
  const install = npmInstall(project, [...userFacing, tarballs.get(binaryPackage)!]);
  if (!report(installName, [...(toolchain.stdout.trim() ? [`on PATH: ${toolchain.stdout.trim()}`] : []), ...(install.status === 0 ? [] : describeRun(install))])) return;

  const installed = run(project, ['npm', 'ls', '--all', '--parseable']);
  const paths = installed.stdout.split('\n');
  report('the installed tree has no testkit and no binary package of another triple', [
    ...paths.filter((p) => p.endsWith('/@vfiokit/testkit')).map((p) => `installed: ${p}`),
    ...TARGETS.filter((t) => t !== host).flatMap((t) => paths.filter((p) => p.endsWith(`/@vfiokit/vfio-core-${t.platform}`)).map((p) => `installed: ${p}`)),
  ]);

  const version = run(project, ['npx', 'vfiokit', '--version']);
  report(`npx vfiokit --version prints ${cli.version}`, version.status === 0 && version.stdout.trim() === cli.version ? [] : describeRun(version));

  const ls = run(project, ['npx', 'vfiokit', '--mock', 'workstation', 'ls', '--json']);
  const lsProblems = ls.status === 0 ? [] : describeRun(ls);
  if (ls.status === 0) {
    try {
      const model = JSON.parse(ls.stdout) as { platform?: string; groups?: unknown[] };
      if (model.platform !== 'x86' || !(model.groups && model.groups.length > 0)) lsProblems.push(`not the workstation's groups: ${ls.stdout.slice(0, 200)}`);
    } catch {
      lsProblems.push(`not JSON: ${ls.stdout.slice(0, 200)}`);
    }
  }
  report('npx vfiokit --mock workstation ls --json lists the simulated host from the published fixture hosts', lsProblems);

  writeFileSync(join(project.dir, 'map.js'), MAP_SCRIPT);
  const map = run(project, ['node', 'map.js']);
  report(
    "a script that imports @vfiokit/core maps 2 MiB on vfio-core's mock in one ioctl",
    map.status === 0 && map.stdout.trim() === JSON.stringify({ entries: 1, ioctls: 1, bytes: '2097152' }) ? [] : describeRun(map),
  );

  const lab = run(project, ['npx', 'vfiokit', 'lab']);
  report('the installed vfiokit lab says the lab runs from a clone (exit 8)', lab.status === 8 && /not part of an installed vfiokit/.test(lab.stderr) ? [] : describeRun(lab));

  // Without the binary package: what npm --omit=optional, or an install on
  // a machine of another kind, leaves.
  const bare = userProject(join(scratch, 'no-binary'));
  const bareInstall = npmInstall(bare, userFacing);
  if (!report(`npm installs the packed packages without ${binaryPackage}`, bareInstall.status === 0 ? [] : describeRun(bareInstall))) return;
  const missing = run(bare, ['npx', 'vfiokit', '--mock', 'workstation', 'ls']);
  const expected = `vfiokit: @vfiokit/vfio-core has no binary for this machine's target ${host.triple}: the package that holds it, ${binaryPackage}, is not installed\nhint: install it: 'npm install ${binaryPackage}@${cli.version}'`;
  report(
    `without ${binaryPackage} vfiokit exits 8 naming ${host.triple} and the package to install, with no stack trace`,
    missing.status === 8 && missing.stderr.startsWith(expected) && !/\n\s+at /.test(missing.stderr) ? [] : [`wanted stderr to start with: ${expected}`, ...describeRun(missing)],
  );
  writeFileSync(join(bare.dir, 'load.js'), LOAD_SCRIPT);
  const load = run(bare, ['node', 'load.js']);
  let loaded: { code?: string; triple?: string; packageName?: string } = {};
  try {
    loaded = JSON.parse(load.stdout) as typeof loaded;
  } catch {
    // reported below
  }
  report(
    `without ${binaryPackage} require('@vfiokit/core') throws NATIVE_MISSING with the triple and the package`,
    loaded.code === 'NATIVE_MISSING' && loaded.triple === host.triple && loaded.packageName === binaryPackage ? [] : describeRun(load),
  );
}

function main(): number {
  const repoRoot = resolve(__dirname, '..', '..', '..', '..');
  if (!existsSync(join(repoRoot, 'pnpm-workspace.yaml'))) {
    process.stderr.write(`release: ${repoRoot} is not vfiokit's clone (no pnpm-workspace.yaml); run it as 'pnpm release:check'\n`);
    return 2;
  }
  const cacheDir = releaseCacheDir();
  const scratch = mkdtempSync(join(tmpdir(), 'vfiokit-release-'));
  try {
    checkTargets(repoRoot, cacheDir);
    const tarballs = checkPackages(repoRoot, scratch);
    if (tarballs.has('@vfiokit/cli')) checkInstall(scratch, tarballs);
    else report('the command is packed, so it can be installed', ['@vfiokit/cli was not packed']);
  } catch (err) {
    report('the release check runs to its end', [err instanceof Error ? (err.stack ?? err.message) : String(err)]);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stdout.write(formatTap(cases));
  return cases.every((c) => c.ok || c.skip) ? 0 : 1;
}

process.exitCode = main();
