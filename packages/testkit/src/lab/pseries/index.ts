// The pseries lab profile: Debian's 6.12 ppc64el kernel in QEMU's `pseries`
// machine under TCG, booted once with one PHB and once with two, each PHB
// holding one edu. In the guest the static ppc64le vfio-lab runs the sPAPR
// suite against the real vfio_iommu_spapr_tce; on the host the same suite
// runs against vfio-core's mock; the two are compared case by case. See
// README.md here for what this proves and what it cannot.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fetchPackage, newestPackage, requireTool } from '../debian';
import { LabError } from '../errors';
import { resolveModules, KernelModule } from '../modules';
import { consoleProblemsReport, ExpectedWarning } from '../console';
import { CaseReport, LabContext, LabProfile } from '../profile';
import { runGuest } from '../qemu';
import { buildInitramfs, eduBdfs, PseriesTopology, qemuArgs, readMarks, TOPOLOGIES } from './guest';
import { buildLab, ensureHost, KERNEL_PATTERN, RUST_TARGET } from './host';
import { parseResults, ResultsFile } from '../conformance';
import { compareResults } from './results';

const QEMU = 'qemu-system-ppc64';
/** vfio-pci pulls in vfio-pci-core and vfio; irqbypass and virqfd are built in on 6.12. */
const GUEST_MODULES = ['vfio', 'vfio_iommu_spapr_tce', 'vfio_pci'];
/**
 * A pseries boot, suite and power-off take 15-25 s on an idle machine; on
 * this 2-core machine at load 35 they took 93 s (one PHB) and 155 s (two),
 * and at load 45 both ran past 240 s while still making progress. A guest
 * past this is hung.
 */
const GUEST_TIMEOUT_MS = 480_000;

interface Kernel {
  readonly vmlinux: string;
  readonly moduleDir: string;
  readonly release: string;
}

function pseriesKernel(ctx: LabContext): Kernel {
  const wanted = process.env.VFIOKIT_LAB_PSERIES_KERNEL || `${newestPackage(KERNEL_PATTERN, 'linux-image-6.12')}:ppc64el`;
  ctx.log(`pseries kernel: ${wanted}`);
  const pkg = fetchPackage(ctx.cacheDir, wanted);
  const boot = readdirSync(join(pkg.root, 'boot')).find((f) => f.startsWith('vmlinux-'));
  const releases = readdirSync(join(pkg.root, 'lib', 'modules'));
  if (boot === undefined || releases.length !== 1) {
    throw new LabError('BAD_PACKAGE', `${wanted} has no boot/vmlinux-* or not exactly one lib/modules/<release> (unpacked in ${pkg.root})`);
  }
  return { vmlinux: join(pkg.root, 'boot', boot), moduleDir: join(pkg.root, 'lib', 'modules', releases[0]!), release: releases[0]! };
}

/**
 * The one kernel warning a case causes on purpose. The suite's
 * unregister-while-mapped case (crates/vfio-lab/src/spapr_cases.rs) runs in
 * a child process and leaks a preregistered region the way 6.12's
 * tce_iommu_unregister_pages does (it answers 0 while mm_iommu_put refuses
 * with EBUSY): the region stays on the mm's iommu_group_mem_list, and when
 * the child's mm is freed destroy_context
 * (arch/powerpc/mm/book3s64/mmu_context.c) does
 * `WARN_ON_ONCE(!list_empty(&mm->context.iommu_group_mem_list))`. vfio-core
 * never causes it (TceContainer refuses to unregister mapped memory); the
 * case shows what the kernel does when someone else does.
 */
const LEAK_WARNING: ExpectedWarning = {
  at: /WARNING: CPU: \d+ PID: \d+ at arch\/powerpc\/mm\/book3s64\/mmu_context\.c:\d+ destroy_context\+/,
  after: 'vfiokit-pseries: expect-warning destroy_context',
  why: "destroy_context's WARN_ON_ONCE on the iommu_group_mem_list the unregister-while-mapped case's child leaked",
};

function runMock(hostBin: string, topology: PseriesTopology, out: string): ResultsFile {
  const functions = topology.functions ?? 1;
  const args = ['spapr', '--backend', 'mock', '--phbs', String(topology.phbs), ...(functions > 1 ? ['--functions', String(functions)] : []), '--out', out];
  const r = spawnSync(hostBin, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new LabError('BAD_RESULTS', `the mock run '${hostBin} spapr --backend mock' failed (${r.status}): ${(r.stderr ?? '').trim()}`);
  }
  return parseResults(readFileSync(out, 'utf8'), out);
}

async function boot(
  ctx: LabContext,
  topology: PseriesTopology,
  kernel: Kernel,
  parts: { busybox: Buffer; labBinary: Buffer; modules: readonly KernelModule[] },
  hostBin: string,
): Promise<CaseReport[]> {
  const t = topology.name;
  const initramfs = join(ctx.outDir, `${t}-initramfs.cpio`);
  const results = join(ctx.outDir, `${t}-kernel.jsonl`);
  const consolePath = join(ctx.outDir, `${t}-console.log`);
  writeFileSync(initramfs, buildInitramfs(parts.busybox, parts.labBinary, parts.modules, topology));
  writeFileSync(results, '');
  const timeoutMs = Math.min(ctx.guestTimeoutMs, GUEST_TIMEOUT_MS);
  const edus = eduBdfs(topology).length;
  ctx.log(`pseries ${t}: booting ${kernel.release} with ${topology.phbs} PHB(s) and ${edus} edu(s); console in ${consolePath}`);
  const run = await runGuest({
    qemu: QEMU,
    args: qemuArgs(topology, { vmlinux: kernel.vmlinux, initramfs, results }),
    consolePath,
    timeoutMs,
    onLine: (line) => {
      if (line.startsWith('vfiokit-pseries:')) ctx.log(`pseries ${t} guest ${line.slice('vfiokit-pseries:'.length).trim()}`);
    },
  });
  ctx.log(`pseries ${t}: guest ${run.timedOut ? 'killed' : 'powered off'} after ${(run.elapsedMs / 1000).toFixed(1)} s`);

  const reports: CaseReport[] = [];
  const marks = readMarks(run.console);
  if (run.timedOut) {
    reports.push({
      name: `guest powers off within ${timeoutMs / 1000} s`,
      ok: false,
      detail: [`the guest hung during ${marks.lastStage ?? 'the kernel boot'} and was killed; see ${consolePath}`],
    });
  }
  reports.push({
    name: `guest boots, loads the VFIO modules and binds ${edus} edu device(s) to vfio-pci`,
    ok: marks.failure === undefined && marks.reachedRun && marks.bound.length === edus,
    detail: marks.failure !== undefined ? [`guest setup failed: ${marks.failure}`, `see ${consolePath}`] : [...marks.bound],
  });
  reports.push(consoleProblemsReport(run.console, [LEAK_WARNING]));

  let kernelResults: ResultsFile;
  try {
    kernelResults = parseResults(readFileSync(results, 'utf8'), results);
  } catch (err) {
    reports.push({ name: 'guest results are readable', ok: false, detail: [String(err instanceof Error ? err.message : err), `see ${results}`] });
    return reports.map((r) => ({ ...r, name: `${t}: ${r.name}` }));
  }
  reports.push({
    name: 'vfio-lab ran the suite to its end in the guest',
    ok: kernelResults.complete && /run-exit=0\b/.test(run.console),
    ...(kernelResults.complete ? {} : { detail: [`${results} has no end line: the guest stopped during the suite; see ${consolePath}`] }),
  });
  const mock = runMock(hostBin, topology, join(ctx.outDir, `${t}-mock.jsonl`));
  reports.push(...compareResults(kernelResults, mock));
  return reports.map((r) => ({ ...r, name: `${t}: ${r.name}` }));
}

export const pseriesProfile: LabProfile = {
  name: 'pseries',
  description: 'pseries (sPAPR TCE, PAPR hypercalls), Debian 6.12 ppc64el, one edu per PHB and two functions in one PE: TCE v1/v2 on the real kernel',
  async run(ctx: LabContext): Promise<CaseReport[]> {
    requireTool(QEMU, 'qemu-system-ppc');
    ensureHost(ctx.log);
    const kernel = pseriesKernel(ctx);
    const busybox = readFileSync(join(fetchPackage(ctx.cacheDir, 'busybox-static:ppc64el').root, 'bin', 'busybox'));
    const modules = resolveModules(kernel.moduleDir, GUEST_MODULES);
    ctx.log(`pseries modules: ${modules.map((m) => m.name).join(' ')}`);
    const labBinary = readFileSync(buildLab(ctx.repoRoot, RUST_TARGET, ctx.log));
    const hostBin = buildLab(ctx.repoRoot, undefined, ctx.log);

    const reports: CaseReport[] = [];
    for (const topology of TOPOLOGIES) {
      reports.push(...(await boot(ctx, topology, kernel, { busybox, labBinary, modules }, hostBin)));
    }
    return reports;
  },
};
