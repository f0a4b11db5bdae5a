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
import { Arm64Host, ARM64_HOSTS, ARM64_TOPOLOGY, buildInitramfs, marks, qemuArgs } from './guest';
import { ensureCrossBuild, RUST_TARGET } from './host';

const QEMU = 'qemu-system-aarch64';
const GUEST_MODULES = ['virtio_pci', 'virtio_console', 'vfio', 'vfio_iommu_type1', 'vfio_pci'];
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

async function boot(
  ctx: LabContext,
  host: Arm64Host,
  kernel: Kernel,
  parts: { busybox: Buffer; labBinary: Buffer; modules: readonly KernelModule[] },
  hostBin: string,
): Promise<CaseReport[]> {
  const t = host.name;
  const initramfs = join(ctx.outDir, `${t}-initramfs.cpio`);
  const results = join(ctx.outDir, `${t}-kernel.jsonl`);
  const consolePath = join(ctx.outDir, `${t}-console.log`);
  writeFileSync(initramfs, buildInitramfs(parts.busybox, parts.labBinary, parts.modules, topologyFor(host)));
  writeFileSync(results, '');
  const timeoutMs = Math.min(ctx.guestTimeoutMs, GUEST_TIMEOUT_MS);
  ctx.log(`arm64 ${t}: booting ${kernel.release} (gic-version=${host.gicVersion}); console in ${consolePath}`);
  const run = await runGuest({
    qemu: QEMU,
    args: qemuArgs(host, { vmlinuz: kernel.vmlinuz, initramfs, results }),
    consolePath,
    timeoutMs,
    onLine: (line) => {
      if (line.startsWith('vfiokit-arm64: stage') || line.startsWith('vfiokit-arm64: fail') || line.startsWith('vfiokit-arm64: run-exit')) {
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
    const reports: CaseReport[] = [];
    for (const host of ARM64_HOSTS) {
      reports.push(...(await boot(ctx, host, kernel, { busybox, labBinary, modules }, hostBin)));
    }
    return reports;
  },
};
