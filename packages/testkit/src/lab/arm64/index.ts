// The arm64 lab profile: Debian's 6.1 arm64 kernel on QEMU's `virt` with an
// SMMUv3, booted twice under TCG: with a GICv3 and its ITS (MSIs isolated:
// the whole type1 conformance suite runs, edu DMA goes through the SMMU),
// and with a GICv2 (no ITS: the kernel refuses the container's IOMMU). In
// the guest the static aarch64 vfio-lab runs the suite against the kernel;
// on the host the same suite runs against the mock's SMMUv3 profile, and
// the two are compared case by case.
//
// The guest's packages come through a private apt configuration for arm64
// (../debian.ts privateApt): the machine's own apt and dpkg are untouched.
//
// The GICv3 boot also loads the aarch64 napi addon that `pnpm release:check`
// builds for @vfiokit/vfio-core-linux-arm64-gnu (the same build, into the
// same file, cached in target/npm) in Debian's arm64 Node (the release
// check's cached root, shared over 9p) and drives the edu through it
// (napi-cases.ts); the same script then runs here on the mock's SMMUv3
// profile, and the two must answer alike, case by case.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compareResults, expectedStopFor, parseResults, ResultsFile } from '../conformance';
import { consoleProblemsReport } from '../console';
import { fetchPackage, newestPackage, privateApt, PrivateApt, requireTool } from '../debian';
import { LabError } from '../errors';
import { KernelModule, resolveModules } from '../modules';
import { buildLab } from '../pseries/host';
import { CaseReport, LabContext, LabProfile } from '../profile';
import { runGuest } from '../qemu';
import { Arm64Host, ARM64_HOSTS, ARM64_TOPOLOGY, buildInitramfs, marks, NapiFiles, qemuArgs } from './guest';
import { ensureCrossBuild, RUST_TARGET } from './host';
import { buildAddon } from '../../release/build';
import { debianNodeRoot, releaseCacheDir } from '../../release/sysroot';
import { TARGETS } from '../../release/targets';

const QEMU = 'qemu-system-aarch64';
// 9p and its transport: the napi boot mounts Debian's arm64 Node from the host.
const GUEST_MODULES = ['virtio_pci', 'virtio_console', '9pnet_virtio', '9p', 'vfio', 'vfio_iommu_type1', 'vfio_pci'];
const NAPI_SCRIPT = join(__dirname, 'napi-cases.js');
const MOCK_CASES_SCRIPT = join(__dirname, '..', '..', 'release', 'mock-cases.js');
/** Debian's generic arm64 6.1 kernel, any ABI number (not -cloud, -rt or -dbg). */
export const KERNEL_PATTERN = /^linux-image-6\.1\.0-\d+-arm64$/;
/** A boot, suite and power-off take well under a minute here; a guest past this is hung. */
const GUEST_TIMEOUT_MS = 300_000;

interface Kernel {
  readonly vmlinuz: string;
  readonly moduleDir: string;
  readonly release: string;
}

function arm64Kernel(ctx: LabContext, apt: PrivateApt): Kernel {
  const wanted = process.env.VFIOKIT_LAB_ARM64_KERNEL || newestPackage(KERNEL_PATTERN, 'linux-image-6.1.0-', apt);
  ctx.log(`arm64 kernel: ${wanted}`);
  const pkg = fetchPackage(ctx.cacheDir, wanted, apt);
  const boot = readdirSync(join(pkg.root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  const releases = readdirSync(join(pkg.root, 'lib', 'modules'));
  if (boot === undefined || releases.length !== 1) {
    throw new LabError('BAD_PACKAGE', `${wanted} has no boot/vmlinuz-* or not exactly one lib/modules/<release> (unpacked in ${pkg.root})`);
  }
  return { vmlinuz: join(pkg.root, 'boot', boot), moduleDir: join(pkg.root, 'lib', 'modules', releases[0]!), release: releases[0]! };
}

function topologyFor(host: Arm64Host): typeof ARM64_TOPOLOGY & { host: Arm64Host['facts'] } {
  return { ...ARM64_TOPOLOGY, host: host.facts };
}

function runMock(ctx: LabContext, hostBin: string, host: Arm64Host): ResultsFile {
  const topology = join(ctx.outDir, `${host.name}-topology.json`);
  const out = join(ctx.outDir, `${host.name}-mock.jsonl`);
  writeFileSync(topology, `${JSON.stringify(topologyFor(host), null, 2)}\n`);
  const r = spawnSync(hostBin, ['x86', '--backend', 'mock', '--topology', topology, '--out', out], { encoding: 'utf8' });
  writeFileSync(join(ctx.outDir, `${host.name}-mock.log`), r.stderr ?? '');
  if (r.status !== 0) {
    throw new LabError('BAD_RESULTS', `the mock run '${hostBin} x86 --backend mock' failed (${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-5).join(' / ')}`);
  }
  return parseResults(readFileSync(out, 'utf8'), out);
}

/**
 * The SMMU's own verdict on the DMAs the suite makes it refuse (edu into an
 * unmapped and a read-only IOVA): arm_smmu_evtq_thread logs each event
 * ("event 0x10 received", F_TRANSLATION; 0x13 F_PERMISSION). With no MSI
 * isolation no container gets an IOMMU, no DMA runs, and none is logged.
 */
export function smmuEventsReport(consoleText: string, host: Arm64Host): CaseReport {
  const events = consoleText.split(/\r?\n/).filter((l) => /arm-smmu-v3 \S+: event 0x[0-9a-f]+ received/.test(l));
  const dmaRan = host.facts.msiIsolated || host.facts.allowUnsafeInterrupts;
  const name = dmaRan ? 'the guest kernel logged SMMU events for the DMAs the SMMU refused' : 'the guest kernel logged no SMMU event: no container got an IOMMU, so no DMA ran';
  const ok = dmaRan ? events.length > 0 : events.length === 0;
  return ok ? { name, ok } : { name, ok, detail: dmaRan ? ['no "arm-smmu-v3 ...: event 0x.. received" line on the console'] : events.slice(0, 5) };
}

/** The aarch64 addon, the scripts and Debian's arm64 Node: what the napi boot brings. */
interface NapiParts {
  readonly files: NapiFiles;
  readonly nodeRoot: string;
}

function napiParts(ctx: LabContext): NapiParts {
  const target = TARGETS.find((t) => t.triple === RUST_TARGET);
  if (target === undefined) throw new LabError('BAD_PACKAGE', `the release targets have no ${RUST_TARGET}`);
  // napi build is cargo underneath: a second run with nothing changed links nothing.
  const started = Date.now();
  const addon = buildAddon(ctx.repoRoot, target, ctx.log);
  const built = Date.now();
  const nodeRoot = debianNodeRoot(releaseCacheDir(), target.debianArch, ctx.log);
  ctx.log(`arm64 napi: addon build ${((built - started) / 1000).toFixed(1)} s, Debian's arm64 Node root ${((Date.now() - built) / 1000).toFixed(1)} s (${nodeRoot})`);
  return { files: { addon: readFileSync(addon), napiCases: readFileSync(NAPI_SCRIPT), mockCases: readFileSync(MOCK_CASES_SCRIPT) }, nodeRoot };
}

/** The JSON lines of one napi-cases.js run: its header ({ group, bdf, ... }), the case lines, and whether it ended. */
export function parseNapiLines(text: string): { header?: { group: number; bdf: string }; cases: string[]; ended: boolean } {
  const lines = text.split(/\r?\n/).filter((l) => l.startsWith('{'));
  const first = lines[0];
  let header: { group: number; bdf: string } | undefined;
  try {
    const h = first === undefined ? undefined : (JSON.parse(first) as { group?: unknown; bdf?: unknown });
    if (h && typeof h.group === 'number' && typeof h.bdf === 'string') header = { group: h.group, bdf: h.bdf };
  } catch {
    // no header: reported by the caller
  }
  return { ...(header ? { header } : {}), cases: lines.filter((l) => l.startsWith('{"case":')), ended: lines.some((l) => l.startsWith('{"end":')) };
}

/** The mock's answers to the same script, on the host, with the x86_64 addon `pnpm build` made. */
function runNapiMock(ctx: LabContext, host: Arm64Host, group: number, bdf: string): { cases: string[]; problems: string[] } {
  const x64 = TARGETS.find((t) => t.qemu === undefined)!;
  const addon = join(ctx.repoRoot, 'crates', 'vfio-core', `vfio-core.${x64.platform}.node`);
  const config = {
    iommuProfile: host.facts.iommu,
    msiIsolated: host.facts.msiIsolated,
    allowUnsafeInterrupts: host.facts.allowUnsafeInterrupts,
    dmaEntryLimit: ARM64_TOPOLOGY.dmaEntryLimit,
    groups: [{ id: group, devices: [{ address: bdf, driver: 'vfio-pci' }] }],
  };
  const r = spawnSync(process.execPath, [NAPI_SCRIPT, addon, 'mock', bdf, String(group), JSON.stringify(config)], { encoding: 'utf8', timeout: 120_000 });
  writeFileSync(join(ctx.outDir, `${host.name}-napi-mock.jsonl`), r.stdout ?? '');
  const parsed = parseNapiLines(r.stdout ?? '');
  const problems = r.status === 0 && parsed.ended ? [] : [`the mock run exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}`];
  return { cases: parsed.cases, problems };
}

/** The napi boot's reports: the addon ran to its end in the guest, and each case answered as on the mock. */
function napiReports(ctx: LabContext, host: Arm64Host, marked: readonly string[], napiResults: string): CaseReport[] {
  const exit = marked.find((l) => l.startsWith('napi-exit='))?.slice('napi-exit='.length);
  const uptime = marked.find((l) => l.startsWith('napi-uptime='))?.slice('napi-uptime='.length).split(' ').map(Number);
  if (uptime?.length === 2) ctx.log(`arm64 ${host.name}: Debian's arm64 Node and the addon took ${(uptime[1]! - uptime[0]!).toFixed(1)} s of the guest's time`);
  const kernel = parseNapiLines(readFileSync(napiResults, 'utf8'));
  const ran = "the published aarch64 addon loads in Debian's arm64 Node on the real kernel and runs the napi cases to their end";
  if (exit !== '0' || kernel.header === undefined || !kernel.ended) {
    return [{ name: ran, ok: false, detail: [`napi-exit=${exit ?? '(none: the guest never got there)'}`, `see ${napiResults} and the console`] }];
  }
  const mock = runNapiMock(ctx, host, kernel.header.group, kernel.header.bdf);
  const reports: CaseReport[] = [{ name: ran, ok: true }];
  if (mock.problems.length > 0) return [...reports, { name: 'the napi cases run on the mock', ok: false, detail: mock.problems }];
  const n = Math.max(kernel.cases.length, mock.cases.length);
  for (let i = 0; i < n; i++) {
    const k = kernel.cases[i];
    const m = mock.cases[i];
    const name = (JSON.parse(k ?? m!) as { case: string }).case;
    const same = k === m && !k!.includes('"threw":');
    reports.push(same ? { name: `napi: ${name}`, ok: true } : { name: `napi: ${name}`, ok: false, detail: [`kernel: ${k ?? '(no answer)'}`, `mock:   ${m ?? '(no answer)'}`] });
  }
  return reports;
}

async function boot(
  ctx: LabContext,
  host: Arm64Host,
  kernel: Kernel,
  parts: { busybox: Buffer; labBinary: Buffer; modules: readonly KernelModule[]; napi?: NapiParts },
  hostBin: string,
): Promise<CaseReport[]> {
  const t = host.name;
  const initramfs = join(ctx.outDir, `${t}-initramfs.cpio`);
  const results = join(ctx.outDir, `${t}-kernel.jsonl`);
  const consolePath = join(ctx.outDir, `${t}-console.log`);
  const napi = host.napi ? parts.napi : undefined;
  const napiResults = join(ctx.outDir, `${t}-napi-kernel.jsonl`);
  writeFileSync(initramfs, buildInitramfs(parts.busybox, parts.labBinary, parts.modules, topologyFor(host), napi?.files));
  writeFileSync(results, '');
  if (napi) writeFileSync(napiResults, '');
  const timeoutMs = Math.min(ctx.guestTimeoutMs, GUEST_TIMEOUT_MS);
  ctx.log(`arm64 ${t}: booting ${kernel.release} (gic-version=${host.gicVersion}); console in ${consolePath}`);
  const run = await runGuest({
    qemu: QEMU,
    args: qemuArgs(host, { vmlinuz: kernel.vmlinuz, initramfs, results, ...(napi ? { napi: { nodeRoot: napi.nodeRoot, results: napiResults } } : {}) }),
    consolePath,
    timeoutMs,
    onLine: (line) => {
      if (/^vfiokit-arm64: (stage|fail|run-exit|napi-exit)/.test(line)) {
        ctx.log(`arm64 ${t} guest ${line.slice('vfiokit-arm64:'.length).trim()}`);
      }
    },
  });
  ctx.log(`arm64 ${t}: guest ${run.timedOut ? 'killed' : 'powered off'} after ${(run.elapsedMs / 1000).toFixed(1)} s`);
  const m = marks(run.console);
  writeFileSync(join(ctx.outDir, `${t}-host-facts.txt`), `${m.filter((l) => /^(group|member|param|dmesg|interrupts|dt)=/.test(l)).join('\n')}\n`);

  const reports: CaseReport[] = [];
  const failure = m.find((l) => l.startsWith('fail='));
  const bound = m.filter((l) => l.startsWith('bound='));
  const wantBound = ARM64_TOPOLOGY.devices.filter((d) => d.driver === 'vfio-pci').length;
  if (run.timedOut) {
    reports.push({ name: `guest powers off within ${timeoutMs / 1000} s`, ok: false, detail: [`the guest hung; see ${consolePath}`] });
  }
  reports.push({
    name: `guest boots, loads the VFIO modules and binds ${wantBound} edu devices to vfio-pci behind the SMMUv3`,
    ok: failure === undefined && m.includes('stage=run') && bound.length === wantBound,
    detail: failure !== undefined ? [`guest setup failed: ${failure.slice(5)}`, `see ${consolePath}`] : bound,
  });
  reports.push(consoleProblemsReport(run.console), smmuEventsReport(run.console, host));

  let kernelResults: ResultsFile;
  try {
    kernelResults = parseResults(readFileSync(results, 'utf8'), results);
  } catch (err) {
    reports.push({ name: 'guest results are readable', ok: false, detail: [String(err instanceof Error ? err.message : err), `see ${results}`] });
    return reports.map((r) => ({ ...r, name: `${t}: ${r.name}` }));
  }
  reports.push({
    name: 'vfio-lab ran the suite to its end in the guest',
    ok: kernelResults.complete && m.includes('run-exit=0'),
    ...(kernelResults.complete ? {} : { detail: [`${results} has no end line: the guest stopped during the suite; see ${consolePath}`] }),
  });
  reports.push(...compareResults(kernelResults, runMock(ctx, hostBin, host), expectedStopFor(host.facts, ARM64_TOPOLOGY)).map((c) => ({ ...c, name: `conformance: ${c.name}` })));
  if (napi) reports.push(...napiReports(ctx, host, m, napiResults));
  return reports.map((r) => ({ ...r, name: `${t}: ${r.name}` }));
}

export const arm64Profile: LabProfile = {
  name: 'arm64',
  description: 'virt + SMMUv3, Debian 6.1 arm64, edu devices: type1v2 behind an SMMUv3, with a GICv3 ITS and with a GICv2 (no MSI isolation)',
  async run(ctx: LabContext): Promise<CaseReport[]> {
    requireTool(QEMU, 'qemu-system-arm');
    ensureCrossBuild(ctx.log);
    const apt = privateApt(join(ctx.cacheDir, 'apt-arm64'), 'arm64', ctx.log);
    const kernel = arm64Kernel(ctx, apt);
    const busybox = readFileSync(join(fetchPackage(ctx.cacheDir, 'busybox-static', apt).root, 'bin', 'busybox'));
    const modules = resolveModules(kernel.moduleDir, GUEST_MODULES);
    ctx.log(`arm64 modules: ${modules.map((m) => m.name).join(' ')}`);
    const labBinary = readFileSync(buildLab(ctx.repoRoot, RUST_TARGET, ctx.log));
    const hostBin = buildLab(ctx.repoRoot, undefined, ctx.log);
    const napi = ARM64_HOSTS.some((h) => h.napi) ? napiParts(ctx) : undefined;
    const reports: CaseReport[] = [];
    for (const host of ARM64_HOSTS) {
      reports.push(...(await boot(ctx, host, kernel, { busybox, labBinary, modules, ...(napi ? { napi } : {}) }, hostBin)));
    }
    return reports;
  },
};
