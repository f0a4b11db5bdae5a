// The iommufd lab profile: the lab's own kernel (Debian sid's
// linux-source-7.2, or trixie's linux-source-6.12 when
// VFIOKIT_KERNEL_SUITE/VFIOKIT_KERNEL_SOURCE say so, built with IOMMUFD,
// VFIO_DEVICE_CDEV and IOMMUFD_VFIO_CONTAINER by build-kernel.sh beside
// this file, cached outside the clone) in the x86
// q35 guest with the same edu topology, behind VT-d. No Debian kernel has
// iommufd, so this is the only place /dev/iommu and the VFIO device cdevs
// meet a real kernel.
//
// One boot runs the conformance suite three ways:
//  - `vfio-lab iommufd` on the kernel (IOAS, HWPT, GET_HW_INFO, IOMMU_OPTION,
//    cdev bind/attach/detach, edu DMA through an IOAS), compared call by
//    call with the same suite on the mock's iommufd profile;
//  - `vfio-lab x86` on the kernel, whose /dev/vfio/vfio is iommufd's type1
//    compatibility container (drivers/iommu/iommufd/vfio_compat.c; this
//    kernel has VFIO_CONTAINER=n, so there is no legacy type1 here),
//    compared with the legacy type1 answers: the mock's type1 on VT-d, which
//    the `x86` profile holds to Debian's 6.1 vfio_iommu_type1 call by call.
//    Where iommufd's emulation answers otherwise the kernel is right: each
//    such case is listed in COMPAT_DIFFERENCES with the kernel source that
//    explains it, and a listed case that stops differing fails, so the list
//    cannot go stale.
//  - the guest kernel's own verdict on its console (no Oops/WARNING; the
//    DMAR faults the refused edu DMAs must cause).
//
// A second boot puts the same kernel behind QEMU's virtio-iommu
// (IOMMUFD_VIRTIO_HOST; its devices sit on pcie.0 and root ports only, see
// X86_ROOT_PORT_TOPOLOGY for why) and runs the iommufd suite twice, compared
// with the mock's iommufd profile on virtio-iommu each time: with iommufd's
// allow_unsafe_interrupts off (no interrupt remapping, so every cdev bind
// is EPERM and every case needing one stops there, on both sides), then on
// (set through /sys/module/iommufd/parameters at run time: the whole suite,
// edu DMA through an IOAS included).
//
// A second, short boot of the same kernel without an IOMMU runs
// `vfio-lab iommufd-selftest`: iommufd dirty tracking on IOMMUFD_TEST's
// selftest mock domain, compared call by call with the mock. QEMU's VT-d
// has no dirty tracking, and on 6.12 behind it the selftest's mock IOMMU
// never probes its mock devices (__iommu_probe_device gives a device
// without a firmware node to the first IOMMU registered without one,
// VT-d), so that needs a guest where the mock IOMMU is the only one (7.2
// names the mock IOMMU in each mock device's fwspec, so there the VT-d
// boot gets them too; the selftest boot runs on both kernels alike).

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaseLine, compareResults, compareSteps, ResultsFile } from '../conformance';
import { requireTool } from '../debian';
import { ExpectedWarning } from '../console';
import { LabError } from '../errors';
import { consoleProblemsReport } from '../console';
import { buildInitramfs, GUEST_OUT_DIR, GUEST_RUN_SCRIPT, MARK, shQuote } from '../initramfs';
import { CaseReport, LabContext, LabProfile } from '../profile';
import { qemuBuild } from '../../qmp/qemu-versions';
import { parseTap } from '../tap';
import { X86Host } from '../x86/hosts';
import {
  bootGuest,
  buildConformance,
  consoleReports,
  hostFactsScript,
  hostTopology,
  Kernel,
  qemuArgs,
  readResults,
  runMock,
  setupReport,
  staticBusybox,
  topologyFile,
} from '../x86/index';
import { LabTopology, X86_ROOT_PORT_TOPOLOGY, X86_TOPOLOGY, x86RootPortTopologyArgs, x86TopologyArgs } from '../x86/topology';

const LAB_BIN = 'vfio-lab';
const GUEST_TAP = 'cases.tap';
/** The QEMU the cdev cases start: iommufd came in QEMU 8.2, bookworm has 7.2. */
const CASES_QEMU = '10.0';
const HOST_FACTS = 'host-facts.txt';
export const RESULTS = {
  iommufdKernel: 'conformance-iommufd-kernel.jsonl',
  iommufdMock: 'conformance-iommufd-mock.jsonl',
  compatKernel: 'conformance-compat-kernel.jsonl',
  type1Mock: 'conformance-type1-mock.jsonl',
  selftestKernel: 'conformance-iommufd-selftest-kernel.jsonl',
  selftestMock: 'conformance-iommufd-selftest-mock.jsonl',
} as const;

/** The virtio-iommu boot's files, in their own folder of the output (the guest's /run/vfiokit-lab there). */
export const VIRTIO_DIR = 'virtio';
/** Its two runs: iommufd's allow_unsafe_interrupts off, then on. */
export const VIRTIO_RUNS = [
  { label: 'unsafe interrupts refused', allowUnsafeInterrupts: false, topology: 'topology.json', kernel: 'conformance-iommufd-kernel.jsonl', mock: 'conformance-iommufd-mock.jsonl' },
  {
    label: 'allow_unsafe_interrupts=1',
    allowUnsafeInterrupts: true,
    topology: 'topology-unsafe.json',
    kernel: 'conformance-iommufd-unsafe-kernel.jsonl',
    mock: 'conformance-iommufd-unsafe-mock.jsonl',
  },
] as const;
/**
 * Where every case that needs a bound device stops without MSI isolation
 * or allow_unsafe_interrupts: iommufd_device_bind refuses the bind with
 * EPERM (drivers/iommu/iommufd/device.c, before it claims DMA ownership).
 */
export const BIND_REFUSED = /^(BIND_IOMMUFD|bind) failed with EPERM$/;

/** virtio-iommu's fault report (drivers/iommu/virtio-iommu.c, viommu_fault_handler). */
const VIOMMU_FAULT = /virtio_iommu virtio\d+: (domain|page|unknown) fault from EP \d+/;

/** DMAR fault report (drivers/iommu/intel/dmar.c, dmar_fault_do_one), as on the x86 profile. */
const DMAR_FAULT = /DMAR: \[DMA (Write|Read)[^\]]*\] Request device \[[0-9a-f:.]+\]/;

/** The VT-d guest: the x86 profile's host, on the lab kernel. */
export const IOMMUFD_VTD_HOST: X86Host = {
  name: 'iommufd',
  description: 'q35 + intel-iommu (VT-d), the lab-built kernel (sid\'s 7.2 unless told otherwise) with iommufd: /dev/iommu, VFIO cdevs, the type1 compat container',
  machine: 'q35,kernel-irqchip=split',
  iommuDevice: 'intel-iommu,intremap=on,caching-mode=on',
  kernelArgs: 'intel_iommu=on iommu=on no_timer_check',
  type1Params: [],
  facts: { iommu: 'vtd', msiIsolated: true, allowUnsafeInterrupts: false },
  labCases: false,
  faultLine: DMAR_FAULT,
};

/**
 * The virtio-iommu guest: the lab kernel on q35 behind QEMU's
 * virtio-iommu-pci, described to the guest by the ACPI VIOT table. x86 has
 * no interrupt remapping with it, so MSIs are not isolated; the guest
 * boots with iommufd's allow_unsafe_interrupts off (its default) and the
 * run script sets it per run.
 */
export const IOMMUFD_VIRTIO_HOST: X86Host = {
  name: 'iommufd-virtio',
  description: 'q35 + virtio-iommu-pci (ACPI VIOT), the lab-built kernel: iommufd and cdevs with unsafe interrupts refused, then allowed',
  machine: 'q35',
  iommuDevice: 'virtio-iommu-pci,bus=pcie.0,addr=0x1',
  kernelArgs: 'no_timer_check',
  type1Params: [],
  facts: { iommu: 'virtio-iommu', msiIsolated: false, allowUnsafeInterrupts: false },
  labCases: false,
  faultLine: VIOMMU_FAULT,
  // Beside the topology, one edu behind a PCIe-to-PCI bridge on its own
  // bus (after the root ports', so their bus numbers stay 01 and 02): the
  // fact that keeps the topology off bridges, checked on every run on 6.12
  // (bridgeProbeReport); 7.2 loses every group to it (virtioBridgeProbe).
  topology: {
    layout: X86_ROOT_PORT_TOPOLOGY,
    args: (iommu) => [...x86RootPortTopologyArgs(iommu), '-device', 'pcie-pci-bridge,id=br3,bus=pcie.0,addr=0x7', '-device', 'edu,id=bridged,bus=br3,addr=0x1'],
  },
};

/** The edu the virtio-iommu guest puts behind a PCIe-to-PCI bridge. */
export const BRIDGED_EDU = '0000:03:01.0';

/**
 * Whether the virtio-iommu guest on lab kernel `version` (`7.2.13-1`) can
 * have the PCIe-to-PCI bridge at all. On 6.12.117 a device joins its group
 * when a driver probes it, so only the edu behind the bridge goes without
 * one. On 7.2.13 every device joins at once when virtio-iommu registers
 * (bus_iommu_probe in iommu_device_register; the boot logs `Adding to
 * iommu group N` for each), and with the bridge there /sys/kernel/
 * iommu_groups is empty by the time init runs, so vfio-pci's probe of
 * 00:03.0 fails with EINVAL (three boots by hand, one lab run); the same
 * boot without the bridge keeps every group. 7.2's iommu_device_register
 * undoes itself when bus_iommu_probe fails (iommu_device_unregister drops
 * every group) and viommu_probe ignores its result (iommu.c,
 * virtio-iommu.c): one group that cannot be set up, most likely the
 * bridge's (an endpoint QEMU's virtio-iommu does not serve; not traced
 * further), costs them all. So from 7.2 on the boot leaves the bridge out,
 * and the bridge case runs on 6.12 only.
 */
export function virtioBridgeProbe(version: string): boolean {
  const [major, minor] = version.split(/[.-]/).map(Number);
  return major !== undefined && minor !== undefined && (major < 6 || (major === 6 && minor <= 12));
}

/** IOMMUFD_VIRTIO_HOST for lab kernel `version`: without the bridge where it takes the groups down. */
export function virtioHostFor(version: string): X86Host {
  if (virtioBridgeProbe(version)) return IOMMUFD_VIRTIO_HOST;
  return { ...IOMMUFD_VIRTIO_HOST, topology: { layout: X86_ROOT_PORT_TOPOLOGY, args: (iommu) => x86RootPortTopologyArgs(iommu) } };
}
/** edu's vendor:device as sysfs prints them (QEMU hw/misc/edu.c). */
const EDU_ID = '0x1234:0x11e8';

// Why the compat container answers otherwise, in few words; the sources are
// drivers/iommu/iommufd/vfio_compat.c (VC), io_pagetable.c (IOPT) and
// drivers/vfio/group.c (GROUP) of 6.12.117; on 7.2.13 every listed case
// still differs (the lab fails one that stops). Most of it is one fact: the
// compat IOAS gets no domain, reserved region or aperture until a device
// is opened (vfio_df_open -> vfio_iommufd_compat_attach_ioas), and until
// then nothing is pinned either.
const NO_DOMAIN_YET = 'until a device fd is open the compat IOAS has no domain: no reserved regions, no aperture, IOVA alignment 1 (IOPT iopt_init_table)';
const NO_VADDR = 'the compat container has no VFIO_UPDATE_VADDR (VC iommufd_vfio_check_extension answers 0, FLAG_VADDR is EINVAL)';

/** The same kernel without an IOMMU, for IOMMUFD_TEST's mock IOMMU (the selftest boot). */
export const IOMMUFD_SELFTEST_HOST: X86Host = {
  ...IOMMUFD_VTD_HOST,
  name: 'iommufd-selftest',
  description: 'q35 without an IOMMU, the lab-built kernel: IOMMUFD_TEST\'s mock IOMMU and its dirty tracking',
  kernelArgs: 'no_timer_check',
  // The lab topology's devices, and no IOMMU device in front of them.
  topology: { layout: X86_TOPOLOGY, args: () => x86TopologyArgs() },
};

/**
 * Conformance cases of the x86 suite where iommufd's type1 compatibility
 * container answered the lab kernel differently from the legacy
 * vfio_iommu_type1 (Debian 6.1, the `x86` profile), by case name, with the
 * reason from the kernel's source. Filled from what the lab kernel answered
 * (lab-results/iommufd/conformance-compat-kernel.jsonl), never from reading
 * alone; the lab README lists them too.
 */
export const COMPAT_DIFFERENCES: Readonly<Record<string, string>> = {
  'a container without an IOMMU offers what the loaded IOMMU drivers offer':
    'DMA_CC is ENODEV before a group brings the compat IOAS (VC get_compat_ioas), TYPE1_NESTING is 0 (obsolete in VC)',
  'a type1v2 container answers extensions from its own IOMMU':
    'DMA_CC is 1 while no HWPT is attached (VC iommufd_vfio_cc_iommu starts at 1); TYPE1_NESTING and UPDATE_VADDR are 0',
  'a group with a device bound to a host driver is not viable and SET_CONTAINER fails with EPERM':
    'SET_CONTAINER with an iommufd only creates the compat IOAS; DMA ownership is claimed when a device is opened (iommufd_device_bind), so a non-viable group joins and then reports VIABLE|CONTAINER_SET (GROUP vfio_group_ioctl_get_status)',
  'SET_IOMMU before any group is attached fails with EINVAL': 'ENODEV: there is no compat IOAS before a group joins (VC get_compat_ioas)',
  'MAP_DMA and IOMMU_GET_INFO before SET_IOMMU fail': 'the compat IOAS exists from the first GROUP_SET_CONTAINER (iommufd_vfio_compat_ioas_create); maps and GET_INFO need no SET_IOMMU',
  'GET_DEVICE_FD before the container has an IOMMU fails': 'a group with group->iommufd set has an IOMMU for GROUP vfio_group_has_iommu; SET_IOMMU is not needed',
  'SET_IOMMU a second time fails': 'VC iommufd_vfio_set_iommu only checks the type and the large-page policy: repeating it succeeds',
  'SET_IOMMU with a type no loaded driver offers fails and leaves the container usable': 'EINVAL: VC iommufd_vfio_set_iommu takes only TYPE1 and TYPE1v2; legacy VFIO searched its drivers (ENODEV)',
  'UNSET_CONTAINER needs a container and no open device, and the last group out takes the IOMMU':
    'GROUP vfio_group_ioctl_unset_container drops group->iommufd without the container_users check: an open device fd is no EBUSY; the compat IOAS stays with the iommufd, so MAP_DMA still works',
  'IOMMU_GET_INFO reports page sizes, IOVA ranges and DMA entries, growing argsz when the buffer is short': `${NO_DOMAIN_YET}; DMA-available is U32_MAX (iommufd has no entry limit), no migration capability (VC iommufd_vfio_iommu_get_info)`,
  'the DMA-available capability counts mappings, not pages': 'iommufd has no dma_entry_limit: DMA-available is always U32_MAX (VC iommufd_fill_cap_dma_avail)',
  'a map with a zero size, an unaligned address or size, or bad flags fails with EINVAL': `${NO_DOMAIN_YET}: a sub-page IOVA maps and the later maps hit it (EEXIST); a range past 2^64 is EOVERFLOW`,
  'a map outside the reported IOVA ranges fails with EINVAL': `${NO_DOMAIN_YET}: the MSI window and addresses past 39 bits map`,
  'maps below, into, across and above every hole of the reported IOVA ranges, and at their top': `${NO_DOMAIN_YET}: one range, 0-0xffffffffffffffff, with no hole`,
  'an unmap must cover whole mappings and reports the size it removed': 'ENOENT, not EINVAL: IOPT iopt_unmap_iova_range refuses an area not wholly inside the range with ENOENT',
  "maps past dma_entry_limit (the kernel's default, 65535 on x86) fail with ENOSPC until one is unmapped":
    'iommufd has no dma_entry_limit (DMA-available U32_MAX, VC iommufd_fill_cap_dma_avail): the 65536th map succeeds',
  "the aperture's last page maps, and unmaps by its range unless the aperture ends at 2^64 (6.1 then never finds or unpins it, and its page stays charged)":
    `${NO_DOMAIN_YET}, so the aperture ends at 2^64; iommufd's io_pagetable keeps inclusive last addresses (iopt_unmap_iova computes iova + length - 1), so the top page unmaps by its range with size 0x1000, where 6.1's type1 wrapped to 0`,
  'a type1 v1 container unmaps a whole mapping from its start and nothing from inside it':
    'SET_IOMMU TYPE1 disables large pages and UNMAP_DMA cuts areas at the range ends (VC iommufd_vfio_unmap_dma, iopt_cut_iova): a page inside a mapping unmaps alone',
  'a map of host memory the process has not mapped (address 0, a hole, a range running into one) fails with EFAULT and takes nothing':
    `${NO_DOMAIN_YET}, and iommufd pins only when a domain is filled: vaddr 0 maps (later maps hit it, EEXIST)`,
  'without CAP_IPC_LOCK, maps past RLIMIT_MEMLOCK fail with ENOMEM until unmap or release gives pages back': `${NO_DOMAIN_YET}, so MAP_DMA pins and charges nothing: no ENOMEM`,
  'a map with a short argsz, one leaving the aperture, and what a failed unmap writes back':
    `${NO_DOMAIN_YET}: a map past the top is EOVERFLOW; a failed UNMAP_DMA is ENOENT and writes size 0 back (VC copies 'unmapped' out on failure too)`,
  'edu DMA lands in the pages mapped first while their vaddr is invalid and after an update to other memory': NO_VADDR,
  'live update: every vaddr is invalidated in one call, and only an invalidated mapping of the same extent takes a new one': NO_VADDR,
  'live update: no group joins while a vaddr is invalid, and unmapping an invalid mapping is allowed': `${NO_VADDR}; a group joins at any time`,
};

/**
 * The warning the iommufd hand-over case (core/src/vfio/live.iommufd-lab.ts,
 * `vfio-lab live-iommufd --dead-mm`) expects from the kernel, once, after
 * it announces it: with IOMMU_OPTION_RLIMIT_MODE 1, CHANGE_PROCESS by the
 * old process after the new one died holding the charge cannot uncharge
 * the dead mm (pages.c update_mm_locked_vm: mmget_not_zero fails, -EINVAL)
 * and ioas.c iommufd_ioas_change_process WARN_ONs that.
 */
export const DEAD_MM_WARNING: ExpectedWarning = {
  at: /iommufd_ioas_change_process/,
  after: 'vfiokit-lab: a new process dies right after IOMMU_IOAS_CHANGE_PROCESS; the old one takes the charge back',
  why: "RLIMIT_MODE 1: the old process's CHANGE_PROCESS cannot uncharge a dead process's mm (update_mm_locked_vm, WARN_ON in iommufd_ioas_change_process)",
};

/**
 * The lab kernel: build-kernel.sh prints its cached folder (building it
 * first when the source version or config changed: about 29 minutes of CPU
 * for 7.2, 15 for 6.12).
 * Its progress is relayed; a failure names what is missing.
 */
export async function iommufdKernel(ctx: LabContext): Promise<Kernel> {
  const script = join(ctx.repoRoot, 'packages', 'testkit', 'src', 'lab', 'iommufd', 'build-kernel.sh');
  const started = Date.now();
  const { code, out, err } = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      const text = partial + b.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        err += `${l}\n`;
        if (l.startsWith('build-kernel:')) ctx.log(l);
      }
    });
    child.on('close', (code) => resolve({ code, out, err: err + partial }));
  });
  if (code !== 0) {
    const lines = err.trim().split('\n').filter((l) => l.startsWith('build-kernel:'));
    throw new LabError(code === 2 ? 'MISSING_TOOL' : 'BAD_PACKAGE', `build-kernel.sh failed (exit ${code}): ${lines.slice(-3).join(' / ') || err.trim().split('\n').slice(-3).join(' / ')}`);
  }
  const dir = out.trim().split('\n').at(-1) ?? '';
  const bzImage = join(dir, 'bzImage');
  if (!existsSync(bzImage)) throw new LabError('BAD_PACKAGE', `build-kernel.sh printed ${dir}, which has no bzImage`);
  const built = existsSync(join(dir, 'built')) ? readFileSync(join(dir, 'built'), 'utf8').trim() : dir;
  ctx.log(`iommufd kernel: ${built} (${((Date.now() - started) / 1000).toFixed(0)} s to get it)`);
  return { vmlinuz: bzImage, moduleDir: '', release: built.split(',')[0] ?? 'lab kernel' };
}

/** The lab kernel's source version (`7.2.13-1`), from the release build-kernel.sh wrote (`linux 7.2.13-1`). */
export function kernelVersion(kernel: Kernel): string {
  return kernel.release.replace(/^linux /, '');
}

/**
 * What the guest runs in the host's root: both kernel suites, the host
 * facts, then every `*.iommufd-lab.js` case with `qemu` (8.2+: iommufd) as
 * the QEMU they start.
 */
export function runScript(ctx: LabContext, host: X86Host, qemu: string): string {
  const q = shQuote;
  const bin = `${GUEST_OUT_DIR}/${LAB_BIN}`;
  const topo = `${GUEST_OUT_DIR}/topology.json`;
  return [
    `# Generated by packages/testkit/src/lab/iommufd/index.ts (${host.name}); run by the guest init inside the host root.`,
    `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp VFIOKIT_LAB=1`,
    `export VFIOKIT_LAB_TOPOLOGY=${q(hostTopology(host).name)} VFIOKIT_LAB_TOPOLOGY_FILE=${topo}`,
    `cd ${q(ctx.repoRoot)} || exit 1`,
    `echo "${MARK} stage=iommufd"`,
    `${bin} iommufd --backend kernel --topology ${topo} --out ${GUEST_OUT_DIR}/${RESULTS.iommufdKernel}`,
    `echo "${MARK} iommufd-exit=$?"`,
    `echo "${MARK} stage=compat"`,
    `${bin} x86 --backend kernel --topology ${topo} --out ${GUEST_OUT_DIR}/${RESULTS.compatKernel}`,
    `echo "${MARK} compat-exit=$?"`,
    ...hostFactsScript(`${GUEST_OUT_DIR}/${HOST_FACTS}`),
    `{ echo "iommufd nodes:"; ls -l /dev/iommu /dev/vfio /dev/vfio/devices /sys/bus/pci/devices/0000:00:03.0/vfio-dev/*; echo "/proc/devices:"; cat /proc/devices; grep -H . /sys/module/iommufd/parameters/* 2>/dev/null; true; } >> ${GUEST_OUT_DIR}/${HOST_FACTS} 2>&1`,
    `echo "${MARK} stage=cases"`,
    `VFIOKIT_LAB_QEMU_IOMMUFD=${q(qemu)} ${q(ctx.nodePath)} packages/testkit/dist/lab/guest.js ${q(ctx.repoRoot)} .iommufd-lab.js > ${GUEST_OUT_DIR}/${GUEST_TAP}`,
    `echo "${MARK} cases-exit=$?"`,
    '',
  ].join('\n');
}

/** What the selftest guest runs: only the iommufd-selftest suite. */
export function selftestRunScript(ctx: LabContext): string {
  const bin = `${GUEST_OUT_DIR}/${LAB_BIN}`;
  return [
    '# Generated by packages/testkit/src/lab/iommufd/index.ts (iommufd-selftest); run by the guest init inside the host root.',
    'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp VFIOKIT_LAB=1',
    `cd ${shQuote(ctx.repoRoot)} || exit 1`,
    `echo "${MARK} stage=selftest"`,
    `${bin} iommufd-selftest --backend kernel --topology ${GUEST_OUT_DIR}/topology.json --out ${GUEST_OUT_DIR}/${RESULTS.selftestKernel}`,
    `echo "${MARK} selftest-exit=$?"`,
    '',
  ].join('\n');
}

/**
 * What the virtio-iommu guest runs: the iommufd suite once per VIRTIO_RUNS
 * entry, iommufd's allow_unsafe_interrupts set to that run's value first,
 * then the host facts.
 */
export function virtioRunScript(ctx: LabContext, bridge = true): string {
  const q = shQuote;
  const bin = `${GUEST_OUT_DIR}/${LAB_BIN}`;
  const param = '/sys/module/iommufd/parameters/allow_unsafe_interrupts';
  return [
    `# Generated by packages/testkit/src/lab/iommufd/index.ts (${IOMMUFD_VIRTIO_HOST.name}); run by the guest init inside the host root.`,
    `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp VFIOKIT_LAB=1`,
    `cd ${q(ctx.repoRoot)} || exit 1`,
    ...(bridge
      ? [
          `b=/sys/bus/pci/devices/${BRIDGED_EDU}`,
          `echo vfio-pci > $b/driver_override; echo ${BRIDGED_EDU} > /sys/bus/pci/drivers_probe 2>/dev/null`,
          `g=$(readlink $b/iommu_group); d=$(readlink $b/driver); echo "${MARK} behind-bridge ${BRIDGED_EDU} id=$(cat $b/vendor):$(cat $b/device) group=\${g##*/} driver=\${d##*/}"`,
        ]
      : []),
    ...VIRTIO_RUNS.flatMap((r, i) => [
      `echo ${r.allowUnsafeInterrupts ? 1 : 0} > ${param}`,
      `echo "${MARK} stage=iommufd-${i + 1} allow_unsafe_interrupts=$(cat ${param})"`,
      `${bin} iommufd --backend kernel --topology ${GUEST_OUT_DIR}/${r.topology} --out ${GUEST_OUT_DIR}/${r.kernel}`,
      `echo "${MARK} iommufd-${i + 1}-exit=$?"`,
    ]),
    ...hostFactsScript(`${GUEST_OUT_DIR}/${HOST_FACTS}`),
    `{ echo "VIOT:"; od -A x -t x1 /sys/firmware/acpi/tables/VIOT; grep -H . /sys/module/iommufd/parameters/*; true; } >> ${GUEST_OUT_DIR}/${HOST_FACTS} 2>&1`,
    '',
  ].join('\n');
}

/**
 * Whether the edu behind the PCIe-to-PCI bridge still gets no IOMMU group
 * under virtio-iommu (and so no vfio-pci), from the guest's
 * `behind-bridge` marker: the reason X86_ROOT_PORT_TOPOLOGY keeps every
 * device off bridges. A QEMU or kernel that fixes it fails this case, so
 * the topology can take the bridge roles back.
 */
export function bridgeProbeReport(consoleText: string): CaseReport {
  const name = 'an edu behind a PCIe-to-PCI bridge gets no IOMMU group and vfio-pci refuses it, so the boot keeps devices on root ports';
  const bdf = BRIDGED_EDU.replace(/\./g, '\\.');
  const m = new RegExp(`^${MARK} behind-bridge ${bdf} id=(\\S*) group=(\\S*) driver=(\\S*)\\r?$`, 'm').exec(consoleText);
  if (m === null) return { name, ok: false, detail: [`the guest printed no '${MARK} behind-bridge' line`] };
  const [, id, group, driver] = m;
  // An empty group and driver prove nothing about a BDF with no device.
  if (id !== EDU_ID) return { name, ok: false, detail: [`${BRIDGED_EDU} is '${id}', not edu (${EDU_ID}): the guest numbered its buses otherwise`] };
  if (group === '' && driver === '') return { name, ok: true };
  return {
    name,
    ok: false,
    detail: [
      `${BRIDGED_EDU} now has group '${group}' and driver '${driver}': devices behind a PCIe-to-PCI bridge work under this QEMU's virtio-iommu and kernel,`,
      'so X86_ROOT_PORT_TOPOLOGY (x86/topology.ts) can put bridge-a and bridge-b back',
    ],
  };
}

/**
 * The virtio-iommu boot, in `ctx.outDir`/virtio: the guest's kernel runs
 * against the mock configured as each VIRTIO_RUNS entry's host, compared
 * call by call; cases needing a device must stop at the refused bind while
 * unsafe interrupts are refused.
 */
async function runVirtio(parent: LabContext, kernel: Kernel, busybox: string, bin: string): Promise<CaseReport[]> {
  const bridge = virtioBridgeProbe(kernelVersion(kernel));
  const host = virtioHostFor(kernelVersion(kernel));
  const ctx: LabContext = { ...parent, outDir: join(parent.outDir, VIRTIO_DIR) };
  mkdirSync(ctx.outDir, { recursive: true });
  const topology = hostTopology(host);
  const initramfs = labInitramfs(ctx, busybox, topology);
  const labBin = join(ctx.outDir, LAB_BIN);
  copyFileSync(bin, labBin);
  for (const r of VIRTIO_RUNS) {
    const base = topologyFile(host, kernelVersion(kernel));
    const file = { ...base, host: { ...base.host, allowUnsafeInterrupts: r.allowUnsafeInterrupts } };
    writeFileSync(join(ctx.outDir, r.topology), `${JSON.stringify(file, null, 2)}\n`);
    runMock(ctx, labBin, 'iommufd', r.mock, r.topology);
  }
  writeFileSync(join(ctx.outDir, GUEST_RUN_SCRIPT), virtioRunScript(ctx, bridge));

  const consolePath = join(ctx.outDir, 'console.log');
  const run = await bootGuest(ctx, host.name, kernel.release, qemuArgs(ctx, host, kernel, initramfs), consolePath);
  ctx.log(`${host.name} guest powered off after ${(run.elapsedMs / 1000).toFixed(1)} s (qemu exit ${run.exitCode})`);
  // DMA ran (and faulted after unmap) in the run that allowed unsafe interrupts.
  const dmaRan = { ...host, facts: { ...host.facts, allowUnsafeInterrupts: VIRTIO_RUNS.some((r) => r.allowUnsafeInterrupts) } };
  const reports: CaseReport[] = [setupReport(run.console, consolePath, topology), ...consoleReports(run.console, dmaRan), ...(bridge ? [bridgeProbeReport(run.console)] : [])];
  for (const r of VIRTIO_RUNS) {
    const onKernel = readResults(join(ctx.outDir, r.kernel), `iommufd suite on the kernel, ${r.label} (guest)`);
    const onMock = readResults(join(ctx.outDir, r.mock), `iommufd suite on the mock, ${r.label} (host)`);
    const options = r.allowUnsafeInterrupts ? {} : { expectedStop: BIND_REFUSED };
    reports.push(...compareResults(onKernel, onMock, options).map((c) => ({ ...c, name: `${r.label}: ${c.name}` })));
  }
  return reports.map((c) => ({ ...c, name: `virtio-iommu: ${c.name}` }));
}

function stepsOf(c: CaseLine | undefined): string {
  return c === undefined ? '(not run)' : `${c.steps.length} steps${c.aborted ? `, stopped: ${c.aborted}` : ''}`;
}

/**
 * The compat container against legacy type1: a case agreeing call by call
 * passes; a case listed in `differences` passes only while it still differs
 * (its name says why); any other difference fails with both sides shown.
 */
export function compareCompat(compat: ResultsFile, legacy: ResultsFile, differences: Readonly<Record<string, string>>): CaseReport[] {
  const byName = new Map(legacy.cases.map((c) => [c.name, c]));
  // A listed name no case has any more (the suite renamed or dropped it)
  // would leave its real difference unexplained and the entry dead.
  const run = new Set([...compat.cases, ...legacy.cases].map((c) => c.name));
  const stale: CaseReport[] = Object.keys(differences)
    .filter((name) => !run.has(name))
    .map((name) => ({ name: `COMPAT_DIFFERENCES entry "${name}"`, ok: false, detail: ['no case of that name ran: the suite renamed or dropped it; rename or remove the entry'] }));
  const compared = compareResults(compat, legacy).map((r) => {
    const why = differences[r.name];
    if (why === undefined) return r;
    if (r.ok) {
      return { name: r.name, ok: false, detail: [`listed in COMPAT_DIFFERENCES (${why}) but the compat container now answers as legacy type1: remove it from the list`] };
    }
    const k = compat.cases.find((c) => c.name === r.name);
    const l = byName.get(r.name);
    const steps = k && l ? compareSteps(k.steps, l.steps, 'compat', 'type1') : [];
    return { name: `${r.name} (differs from legacy type1, as the kernel explains: ${why})`, ok: true, detail: [`compat ${stepsOf(k)}; type1 ${stepsOf(l)}`, ...steps] };
  });
  return [...compared, ...stale];
}

/** The guest's `*.iommufd-lab.js` cases, from its TAP; a TAP without closing counts is a failure. */
export function guestCases(tapPath: string, consolePath: string): CaseReport[] {
  let tap: string;
  try {
    tap = readFileSync(tapPath, 'utf8');
  } catch {
    throw new LabError('BAD_RESULTS', `the guest wrote no ${tapPath}; see ${consolePath}`);
  }
  const reports = parseTap(tap).map((c) => ({ ...c, name: `lab: ${c.name}` }));
  if (!/^# fail \d+$/m.test(tap)) reports.push({ name: 'guest lab runner finishes', ok: false, detail: [`${tapPath} has no closing counts; see ${consolePath}`] });
  if (reports.length === 0) reports.push({ name: 'guest runs the iommufd lab cases', ok: false, detail: [`${tapPath} holds no case: no *.iommufd-lab.js was built`] });
  return reports;
}

/**
 * Writes `ctx.outDir`/initramfs.cpio for the lab kernel, binding
 * `topology`'s vfio-pci devices, and returns its path. Everything is built
 * into the lab kernel (CONFIG_MODULES=n): no modules to load.
 */
function labInitramfs(ctx: LabContext, busybox: string, topology: LabTopology): string {
  const initramfs = join(ctx.outDir, 'initramfs.cpio');
  const bindToVfio = topology.devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.bdf);
  writeFileSync(initramfs, buildInitramfs({ busybox, modules: [], bindToVfio, repoRoot: ctx.repoRoot }));
  return initramfs;
}

/** The lab profile that boots `host` on the lab kernel. */
export function iommufdLabProfile(host: X86Host): LabProfile {
  return { name: host.name, description: host.description, run: (ctx) => runIommufd(ctx, host) };
}

export const iommufdProfile: LabProfile = iommufdLabProfile(IOMMUFD_VTD_HOST);

async function runIommufd(ctx: LabContext, host: X86Host): Promise<CaseReport[]> {
  requireTool('qemu-system-x86_64', 'qemu-system-x86');
  const kernel = await iommufdKernel(ctx);
  const busybox = staticBusybox(ctx);
  const initramfs = labInitramfs(ctx, busybox, hostTopology(host));
  writeFileSync(join(ctx.outDir, 'topology.json'), `${JSON.stringify(topologyFile(host, kernelVersion(kernel)), null, 2)}\n`);
  let qemu: string;
  try {
    qemu = qemuBuild(CASES_QEMU).binary;
  } catch (err) {
    throw new LabError('MISSING_TOOL', (err as Error).message);
  }
  writeFileSync(join(ctx.outDir, GUEST_RUN_SCRIPT), runScript(ctx, host, qemu));
  const bin = buildConformance(ctx);
  runMock(ctx, bin, 'iommufd', RESULTS.iommufdMock);
  runMock(ctx, bin, 'x86', RESULTS.type1Mock);

  const consolePath = join(ctx.outDir, 'console.log');
  const run = await bootGuest(ctx, host.name, kernel.release, qemuArgs(ctx, host, kernel, initramfs), consolePath);
  ctx.log(`${host.name} guest powered off after ${(run.elapsedMs / 1000).toFixed(1)} s (qemu exit ${run.exitCode})`);
  const reports: CaseReport[] = [setupReport(run.console, consolePath), ...consoleReports(run.console, host, [DEAD_MM_WARNING])];

  const iommufdKernelRun = readResults(join(ctx.outDir, RESULTS.iommufdKernel), 'iommufd suite on the kernel (guest)');
  const iommufdMockRun = readResults(join(ctx.outDir, RESULTS.iommufdMock), 'iommufd suite on the mock (host)');
  reports.push(...compareResults(iommufdKernelRun, iommufdMockRun).map((c) => ({ ...c, name: `iommufd: ${c.name}` })));

  const compat = readResults(join(ctx.outDir, RESULTS.compatKernel), 'x86 suite on the compat container (guest)');
  const legacy = readResults(join(ctx.outDir, RESULTS.type1Mock), 'x86 suite on the mock type1 (host)');
  reports.push(...compareCompat(compat, legacy, COMPAT_DIFFERENCES).map((c) => ({ ...c, name: `compat: ${c.name}` })));
  reports.push(...guestCases(join(ctx.outDir, GUEST_TAP), consolePath));
  reports.push(...(await runVirtio(ctx, kernel, busybox, bin)));
  reports.push(...(await runSelftest(ctx, kernel, busybox, bin)));
  return reports;
}

/** The selftest boot: the same kernel and topology, no IOMMU, nothing bound to vfio-pci. */
async function runSelftest(ctx: LabContext, kernel: Kernel, busybox: string, bin: string): Promise<CaseReport[]> {
  const host = IOMMUFD_SELFTEST_HOST;
  const initramfs = join(ctx.outDir, 'initramfs-selftest.cpio');
  writeFileSync(initramfs, buildInitramfs({ busybox, modules: [], bindToVfio: [], repoRoot: ctx.repoRoot }));
  writeFileSync(join(ctx.outDir, GUEST_RUN_SCRIPT), selftestRunScript(ctx));
  runMock(ctx, bin, 'iommufd-selftest', RESULTS.selftestMock);
  const consolePath = join(ctx.outDir, 'console-selftest.log');
  const run = await bootGuest(ctx, host.name, kernel.release, qemuArgs(ctx, host, kernel, initramfs), consolePath);
  ctx.log(`${host.name} guest powered off after ${(run.elapsedMs / 1000).toFixed(1)} s (qemu exit ${run.exitCode})`);
  // Throws when the guest's setup failed; nothing is bound here, so its
  // count of bound edus does not apply.
  setupReport(run.console, consolePath);
  const reports: CaseReport[] = [{ name: 'selftest: the guest without an IOMMU boots the lab kernel', ok: true }, consoleProblemsReport(run.console)];
  const kernelRun = readResults(join(ctx.outDir, RESULTS.selftestKernel), 'iommufd-selftest suite on the kernel (guest)');
  const mockRun = readResults(join(ctx.outDir, RESULTS.selftestMock), 'iommufd-selftest suite on the mock (host)');
  reports.push(...compareResults(kernelRun, mockRun).map((c) => ({ ...c, name: `selftest: ${c.name}` })));
  return reports;
}
