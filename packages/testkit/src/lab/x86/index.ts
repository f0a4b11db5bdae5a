// The x86 lab profiles: Debian's 6.1 amd64 kernel in a q35 guest with edu
// devices in every named topology, behind one of the hosts of hosts.ts
// (VT-d, AMD-Vi, VT-d without interrupt remapping), booted once under TCG.
// In the guest the Rust conformance suite runs against the kernel backend,
// then (VT-d) every *.lab.js case; on the host the same conformance suite
// runs against the mock configured as that host, and the two are compared
// case by case.

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compareResults, expectedStopFor, parseResults } from '../conformance';
import { fetchPackage, newestPackage, requireTool, withAptRefresh } from '../debian';
import { LabError } from '../errors';
import {
  buildInitramfs,
  GUEST_OUT_DIR,
  GUEST_RUN_SCRIPT,
  MARK,
  shQuote,
  TAG_HOST_ROOT,
  TAG_OUT,
  TAG_REPO,
} from '../initramfs';
import { resolveModules } from '../modules';
import { consoleProblemsReport, ExpectedWarning } from '../console';
import { CaseReport, LabContext, LabProfile } from '../profile';
import { GuestRun, runGuest } from '../qemu';
import { parseTap } from '../tap';
import { LabHostFacts, X86_HOSTS, X86Host } from './hosts';
import { qemuBuild } from '../../qmp/qemu-versions';
import { LabTopology, X86_TOPOLOGY, x86TopologyArgs } from './topology';

const QEMU = 'qemu-system-x86_64';

/** What the guest must load: 9p over virtio for the shared folders, and the VFIO stack. */
export const GUEST_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'vfio', 'vfio_iommu_type1', 'vfio_pci'];

const GUEST_TAP = 'cases.tap';
const KERNEL_RESULTS = 'conformance-kernel.jsonl';
const MOCK_RESULTS = 'conformance-mock.jsonl';
const LAB_BIN = 'vfio-lab';
/** What the guest saw of its IOMMU and interrupt remapping (the mock profiles' values come from here). */
const HOST_FACTS = 'host-facts.txt';

/** The devices `host` boots with. */
export function hostTopology(host: X86Host): LabTopology {
  return host.topology?.layout ?? X86_TOPOLOGY;
}

/**
 * topology.json: the guest's devices and the host the mock is configured as;
 * with `kernel` (the iommufd lab's source version) where the mock's answers
 * depend on which kernel booted.
 */
export function topologyFile(host: X86Host, kernel?: string): LabTopology & { readonly host: LabHostFacts } {
  return { ...hostTopology(host), host: kernel === undefined ? host.facts : { ...host.facts, kernel } };
}

export interface Kernel {
  readonly vmlinuz: string;
  readonly moduleDir: string;
  readonly release: string;
}

export function x86Kernel(ctx: LabContext): Kernel {
  const { wanted, pkg } = withAptRefresh(() => {
    const wanted = process.env.VFIOKIT_LAB_KERNEL || newestPackage(/^linux-image-6\.1\.0-\d+-amd64$/, 'linux-image-6.1.0-');
    return { wanted, pkg: fetchPackage(ctx.cacheDir, wanted) };
  }, ctx.log);
  ctx.log(`x86 kernel: ${wanted}`);
  const boot = readdirSync(join(pkg.root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  const releases = readdirSync(join(pkg.root, 'lib', 'modules'));
  if (boot === undefined || releases.length !== 1) {
    throw new LabError('BAD_PACKAGE', `${wanted} has no boot/vmlinuz-* or not exactly one lib/modules/<release> (unpacked in ${pkg.root})`);
  }
  return { vmlinuz: join(pkg.root, 'boot', boot), moduleDir: join(pkg.root, 'lib', 'modules', releases[0]!), release: releases[0]! };
}

/** Where the guest finds Debian's udevadm (copied into the output folder). */
const UDEVADM = 'udevadm';

/**
 * Debian's udev for the lab cases that need a real udevd (boot persistence,
 * packages/cli/src/persist.lab.ts): the host root the guest runs in has no
 * udev. Its udevadm is also the daemon (called as systemd-udevd) and needs
 * only libraries every Debian base system has; it goes to the output
 * folder, which the guest sees wherever the cache is.
 */
function stageUdevadm(ctx: LabContext): void {
  const pkg = withAptRefresh(() => fetchPackage(ctx.cacheDir, 'udev'), ctx.log);
  const dest = join(ctx.outDir, UDEVADM);
  copyFileSync(join(pkg.root, 'bin', 'udevadm'), `${dest}.new`);
  renameSync(`${dest}.new`, dest);
}

export function staticBusybox(ctx: LabContext): string {
  return join(withAptRefresh(() => fetchPackage(ctx.cacheDir, 'busybox-static'), ctx.log).root, 'bin', 'busybox');
}

/**
 * Builds the conformance suite (crates/vfio-lab, no napi) and copies it into
 * the output folder, which the guest sees: a CARGO_TARGET_DIR under /tmp
 * would be hidden there by the guest's own /tmp.
 */
export function buildConformance(ctx: LabContext): string {
  requireTool('cargo', 'cargo (or rustup)');
  ctx.log('x86 conformance: cargo build -p vfio-lab');
  const res = spawnSync('cargo', ['build', '--locked', '-q', '-p', 'vfio-lab', '--message-format', 'short'], {
    cwd: ctx.repoRoot,
    encoding: 'utf8',
  });
  if (res.status !== 0) {
    throw new LabError('BAD_RESULTS', `'cargo build -p vfio-lab' failed:\n${res.stderr.trim().split('\n').slice(-20).join('\n')}`);
  }
  const targetDir = process.env.CARGO_TARGET_DIR || join(ctx.repoRoot, 'target');
  const bin = join(ctx.outDir, LAB_BIN);
  // Copy, then rename over: a binary still running from an earlier run
  // (ETXTBSY) cannot be overwritten in place, but can be replaced.
  copyFileSync(join(targetDir, 'debug', LAB_BIN), `${bin}.new`);
  renameSync(`${bin}.new`, bin);
  return bin;
}

/**
 * Runs `suite` (x86, iommufd) on the host against the mock, configured from
 * the same topology file as the guest (`topology`, in the output folder);
 * results to `out` in the output folder.
 */
export function runMock(ctx: LabContext, bin: string, suite = 'x86', out = MOCK_RESULTS, topology = 'topology.json'): void {
  const res = spawnSync(bin, [suite, '--backend', 'mock', '--topology', join(ctx.outDir, topology), '--out', join(ctx.outDir, out)], {
    encoding: 'utf8',
  });
  writeFileSync(join(ctx.outDir, out.replace(/\.jsonl$/, '.log')), res.stderr ?? '');
  if (res.status !== 0) {
    throw new LabError('BAD_RESULTS', `the ${suite} conformance suite failed on the mock (exit ${res.status}): ${(res.stderr ?? '').trim().split('\n').slice(-5).join(' / ')}`);
  }
}

export function readResults(path: string, label: string): ReturnType<typeof parseResults> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new LabError('BAD_RESULTS', `the ${label} run wrote no results (${path})`);
  }
  try {
    return parseResults(text, path);
  } catch (err) {
    throw new LabError('BAD_RESULTS', (err as Error).message);
  }
}

/** The commands the guest runs inside the host's root, as the shell script init executes. */
/**
 * Shell lines that record what the kernel exposes about its IOMMU and
 * interrupt remapping: each group's reserved regions, the IOMMU's sysfs
 * capability registers, the interrupt chips, vfio_iommu_type1's
 * parameters and the kernel's own words about them.
 */
export function hostFactsScript(out: string): string[] {
  return [
    `{`,
    `  for g in /sys/kernel/iommu_groups/*; do echo "group \${g##*/} reserved_regions:"; cat $g/reserved_regions; done`,
    `  for f in /sys/class/iommu/*/intel-iommu/* /sys/class/iommu/*/amd-iommu/*; do [ -f "$f" ] && echo "$f: $(cat $f 2>/dev/null)"; done`,
    `  echo "type1 parameters:"; grep -H . /sys/module/vfio_iommu_type1/parameters/* 2>/dev/null`,
    `  echo "/proc/interrupts:"; cat /proc/interrupts`,
    `  echo "kernel log:"; dmesg | grep -iE 'iommu|amd-vi|dmar|remapping|vfio|smmu|its|msi' | sed 's/^\\[[^]]*\\] //'`,
    `} > ${out} 2>&1`,
  ];
}

/**
 * The QEMU 11.1 the cli's `vfiokit upgrade` case starts its guest with
 * (upgrade refuses a QEMU older than 10.1 before it looks at the devices;
 * bookworm has 7.2): sid's, from the root scripts/fetch-qemu.sh sid caches,
 * which the guest reaches through the host root it runs in. Its wrapper
 * starts it with the root's own loader and libraries. Undefined when it is
 * not fetched: that case then fails saying how to fetch it.
 */
function cprQemu(): string | undefined {
  try {
    return qemuBuild('11.1').binary;
  } catch {
    return undefined;
  }
}

/**
 * KVM for the guest's own QEMUs, where the lab's CPU allows: QEMU's TCG
 * `-cpu max` is an AMD CPU with SVM (target/i386: TCG emulates SVM and its
 * nested paging), so kvm_amd can load and a QEMU in the guest can run
 * with `-accel kvm`. The cli's `vfiokit upgrade` case needs it: QEMU 11.1's
 * cpr-transfer of a VFIO device calls into KVM unconditionally
 * (hw/vfio/cpr.c vfio_cpr_set_msi_virq -> kvm_irqchip_remove_irqfd_notifier_gsi
 * on kvm_state, NULL under TCG). The modules are staged in the output
 * folder (each after what it needs) and loaded by run.sh, not by /init: a
 * CPU without SVM then only lacks /dev/kvm.
 */
const KVM_MODULES = ['kvm_amd'];
const GUEST_KVM_DIR = 'kvm-modules';

function stageKvmModules(ctx: LabContext, moduleDir: string, busybox: string): { readonly insmod: string; readonly modules: readonly { name: string; file: string }[] } {
  const dir = join(ctx.outDir, GUEST_KVM_DIR);
  mkdirSync(dir, { recursive: true });
  // run.sh runs in the host root, which need not have kmod: busybox's insmod, as /init's.
  copyFileSync(busybox, join(dir, 'busybox'));
  chmodSync(join(dir, 'busybox'), 0o755);
  const modules = resolveModules(moduleDir, KVM_MODULES).map((m) => {
    writeFileSync(join(dir, `${m.name}.ko`), m.object);
    return { name: m.name, file: `${GUEST_OUT_DIR}/${GUEST_KVM_DIR}/${m.name}.ko` };
  });
  return { insmod: `${GUEST_OUT_DIR}/${GUEST_KVM_DIR}/busybox insmod`, modules };
}

function runScript(ctx: LabContext, host: X86Host, kvm?: ReturnType<typeof stageKvmModules>): string {
  const cpr = host.labCases ? cprQemu() : undefined;
  const q = shQuote;
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/tmp',
    VFIOKIT_LAB: '1',
    VFIOKIT_LAB_TOPOLOGY: hostTopology(host).name,
    VFIOKIT_LAB_TOPOLOGY_FILE: `${GUEST_OUT_DIR}/topology.json`,
    ...(host.labCases ? { VFIOKIT_LAB_UDEVADM: `${GUEST_OUT_DIR}/${UDEVADM}` } : {}),
    ...(process.env.VFIOKIT_LAB_CASES ? { VFIOKIT_LAB_CASES: process.env.VFIOKIT_LAB_CASES } : {}),
    ...(cpr ? { VFIOKIT_LAB_QEMU_CPR: cpr } : {}),
  };
  return [
    '# Generated by packages/testkit/src/lab/x86/index.ts; run by the guest init inside the host root.',
    ...Object.entries(env).map(([k, v]) => `export ${k}=${q(v)}`),
    `cd ${q(ctx.repoRoot)} || exit 1`,
    // Each unless loaded already (irqbypass, by vfio); a failure shows on the console.
    ...(kvm === undefined
      ? []
      : [...kvm.modules.map((m) => `[ -d /sys/module/${m.name} ] || ${kvm.insmod} ${q(m.file)}`), `[ -c /dev/kvm ] && echo "${MARK} kvm=yes" || echo "${MARK} kvm=no"`]),
    `echo "${MARK} stage=conformance"`,
    `${GUEST_OUT_DIR}/${LAB_BIN} x86 --backend kernel --topology ${GUEST_OUT_DIR}/topology.json --out ${GUEST_OUT_DIR}/${KERNEL_RESULTS}`,
    `echo "${MARK} conformance-exit=$?"`,
    ...hostFactsScript(`${GUEST_OUT_DIR}/${HOST_FACTS}`),
    ...(host.labCases
      ? [
          `echo "${MARK} stage=cases"`,
          `${q(ctx.nodePath)} packages/testkit/dist/lab/guest.js ${q(ctx.repoRoot)} > ${GUEST_OUT_DIR}/${GUEST_TAP}`,
          `echo "${MARK} cases-exit=$?"`,
        ]
      : []),
    '',
  ].join('\n');
}

export function qemuArgs(ctx: LabContext, host: X86Host, kernel: Kernel, initramfs: string): string[] {
  const share = (id: string, path: string, tag: string, addr: string, readonly: boolean): string[] => [
    '-fsdev',
    `local,id=${id},path=${path},security_model=none,multidevs=remap${readonly ? ',readonly=on' : ''}`,
    '-device',
    `virtio-9p-pci,fsdev=${id},mount_tag=${tag},bus=pcie.0,addr=${addr}`,
  ];
  return [
    '-M', host.machine,
    // KVM exists here but a Linux guest hangs under it (lab-facts.md); TCG works.
    '-accel', 'tcg',
    '-cpu', 'max',
    '-smp', '2',
    '-m', '3072',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', kernel.vmlinuz,
    '-initrd', initramfs,
    // loglevel=5: the console prints levels below it, and a WARNING is
    // KERN_WARNING (4); at 4 the "no Oops, BUG, WARNING" check saw none.
    '-append', `console=ttyS0 ${host.kernelArgs} panic=-1 loglevel=5`,
    ...(host.topology?.args ?? x86TopologyArgs)(host.iommuDevice),
    ...share('hostroot', '/', TAG_HOST_ROOT, '0x8', true),
    ...share('labrepo', ctx.repoRoot, TAG_REPO, '0x9', true),
    ...share('labout', ctx.outDir, TAG_OUT, '0xa', false),
  ];
}

/** Turns the guest's console markers into a setup case, throwing when setup itself failed. */
export function setupReport(consoleText: string, consolePath: string, topology: LabTopology = X86_TOPOLOGY): CaseReport {
  const marks = consoleText
    .split(/\r?\n/)
    .filter((l) => l.startsWith(MARK))
    .map((l) => l.slice(MARK.length).trim());
  const failure = marks.find((m) => m.startsWith('fail='));
  if (failure !== undefined) {
    throw new LabError('GUEST_FAILED', `guest setup failed: ${failure.slice(5)} (console: ${consolePath})`);
  }
  if (!marks.includes('stage=run')) {
    const last = marks.filter((m) => m.startsWith('stage=')).at(-1) ?? 'the kernel boot, before init ran';
    const panic = /Kernel panic - not syncing: .*/.exec(consoleText)?.[0];
    throw new LabError('GUEST_FAILED', `guest stopped during ${last}${panic ? ` (${panic.trim()})` : ''}; see ${consolePath}`);
  }
  const bound = marks.filter((m) => m.startsWith('bound='));
  return {
    name: `guest boots, loads the VFIO modules and binds ${bound.length} edu devices to vfio-pci`,
    ok: bound.length === topology.devices.filter((d) => d.driver === 'vfio-pci').length,
    detail: bound,
  };
}

/**
 * The guest kernel's own verdict: no Oops, BUG or WARNING while the suite
 * drove VFIO (../console.ts, as on pseries), and, x86's own, the IOMMU
 * faults the refused edu DMAs must cause (none when no container ever got
 * an IOMMU: no DMA ran).
 */
export function consoleReports(consoleText: string, host: X86Host = X86_HOSTS[0]!, expected: readonly ExpectedWarning[] = []): CaseReport[] {
  const lines = consoleText.split(/\r?\n/);
  const dmaRan = host.facts.msiIsolated || host.facts.allowUnsafeInterrupts;
  const name = dmaRan
    ? 'the guest kernel logged IOMMU faults for the DMAs the IOMMU refused'
    : 'the guest kernel logged no IOMMU fault: no container got an IOMMU, so no DMA ran';
  const faults = lines.filter((l) => host.faultLine.test(l));
  const ok = dmaRan ? faults.length > 0 : faults.length === 0;
  return [
    consoleProblemsReport(consoleText, expected),
    ok
      ? { name, ok }
      : {
          name,
          ok,
          detail: dmaRan
            ? [`no line matching ${host.faultLine} on the console, though edu wrote to an unmapped and a read-only IOVA`]
            : faults.slice(0, 5),
        },
  ];
}

/** A failed report the host's emulation explains becomes a skip naming the gap; a passing one stays a pass. */
function withGap(r: CaseReport, gap: string | undefined): CaseReport {
  return gap !== undefined && !r.ok ? { ...r, skip: gap } : r;
}

/** A boot that ended in a kernel panic before /init printed anything. */
export function diedBeforeInit(run: GuestRun): boolean {
  return !run.timedOut && !run.console.includes(MARK) && /Kernel panic - not syncing/.test(run.console);
}

/** The lab profile that boots `host`. */
export function x86LabProfile(host: X86Host): LabProfile {
  return { name: host.name, description: host.description, run: (ctx) => runX86(ctx, host) };
}

export const x86Profiles: readonly LabProfile[] = X86_HOSTS.map(x86LabProfile);

/**
 * Boots one lab guest with `args` and waits for it to power off, relaying
 * its progress markers. A kernel that panics before /init (an emulation
 * hiccup under load, not a result) is booted once more, said in the log,
 * its first console kept as console-boot1.log; a guest still running at the
 * deadline is killed and thrown as GUEST_TIMEOUT.
 */
export async function bootGuest(ctx: LabContext, name: string, kernelName: string, args: readonly string[], consolePath: string, qemu = QEMU): Promise<GuestRun> {
  const boot = (): Promise<GuestRun> => {
    ctx.log(`${name} boot: ${kernelName}, console in ${consolePath}`);
    return runGuest({
      qemu,
      args,
      consolePath,
      timeoutMs: ctx.guestTimeoutMs,
      onLine: (line) => {
        if (line.startsWith(MARK)) ctx.log(`${name} guest ${line.slice(MARK.length).trim()}`);
      },
    });
  };
  let run = await boot();
  if (diedBeforeInit(run)) {
    const first = consolePath.replace(/\.log$/, '-boot1.log');
    renameSync(consolePath, first);
    ctx.log(`${name} guest died before init (${/Kernel panic - not syncing: .*/.exec(run.console)?.[0] ?? 'no init'}); booting once more, first console in ${first}`);
    run = await boot();
  }
  if (run.timedOut) {
    throw new LabError('GUEST_TIMEOUT', `the ${name} guest did not power off within ${ctx.guestTimeoutMs / 1000} s and was killed; its console is in ${consolePath}`);
  }
  return run;
}

async function runX86(ctx: LabContext, host: X86Host): Promise<CaseReport[]> {
  requireTool(QEMU, 'qemu-system-x86');
  const kernel = x86Kernel(ctx);
  const busybox = staticBusybox(ctx);
  const modules = resolveModules(kernel.moduleDir, GUEST_MODULES);
  ctx.log(`${host.name} modules: ${modules.map((m) => m.name).join(' ')}`);

  const initramfs = join(ctx.outDir, 'initramfs.cpio');
  writeFileSync(
    initramfs,
    buildInitramfs({
      busybox,
      modules,
      // No dma_entry_limit: the guest runs with the kernel's default (X86_TOPOLOGY says which).
      moduleParams: { vfio_iommu_type1: host.type1Params.join(' ') },
      bindToVfio: hostTopology(host).devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.bdf),
      repoRoot: ctx.repoRoot,
    }),
  );
  writeFileSync(join(ctx.outDir, 'topology.json'), `${JSON.stringify(topologyFile(host), null, 2)}\n`);
  writeFileSync(join(ctx.outDir, GUEST_RUN_SCRIPT), runScript(ctx, host, host.labCases ? stageKvmModules(ctx, kernel.moduleDir, busybox) : undefined));
  if (host.labCases) stageUdevadm(ctx);
  const bin = buildConformance(ctx);
  runMock(ctx, bin);

  const consolePath = join(ctx.outDir, 'console.log');
  const run = await bootGuest(ctx, host.name, kernel.release, qemuArgs(ctx, host, kernel, initramfs), consolePath);
  ctx.log(`${host.name} guest powered off after ${(run.elapsedMs / 1000).toFixed(1)} s (qemu exit ${run.exitCode})`);
  const gaps = host.emulationGaps ?? {};
  const reports: CaseReport[] = [setupReport(run.console, consolePath), ...consoleReports(run.console, host).map((c) => withGap(c, gaps[c.name]))];

  const onKernel = readResults(join(ctx.outDir, KERNEL_RESULTS), 'kernel (guest)');
  const onMock = readResults(join(ctx.outDir, MOCK_RESULTS), 'mock (host)');
  reports.push(...compareResults(onKernel, onMock, expectedStopFor(host.facts)).map((c) => ({ ...withGap(c, gaps[c.name]), name: `conformance: ${c.name}` })));

  if (!host.labCases) return reports;
  let tap: string;
  try {
    tap = readFileSync(join(ctx.outDir, GUEST_TAP), 'utf8');
  } catch {
    throw new LabError('BAD_RESULTS', `the guest wrote no ${GUEST_TAP}; see ${consolePath}`);
  }
  const cases = parseTap(tap);
  if (!/^# fail \d+$/m.test(tap)) {
    reports.push({ name: 'guest lab runner finishes', ok: false, detail: [`${GUEST_TAP} has no closing counts; see ${consolePath}`] });
  }
  reports.push(...cases.map((c) => ({ ...c, name: `lab: ${c.name}` })));
  return reports;
}
