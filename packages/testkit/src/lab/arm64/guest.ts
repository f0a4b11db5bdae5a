// The arm64 guest: QEMU's `virt` machine under TCG with an SMMUv3
// (`iommu=smmuv3`: every device on pcie.0 and below sits behind it),
// Debian's 6.1 arm64 kernel, the x86 guest's edu roles (the grouping comes
// from the kernel's generic pci_device_group, not from the IOMMU driver),
// with one change: `blocked` and its virtio peer are two functions behind a
// root port, not two slots behind a PCIe-to-PCI bridge. Behind that bridge
// both carry the bridge's alias as requester ID, which is one SMMU stream
// ID, and 6.1's arm-smmu-v3 takes only the first master of a stream: the
// second device's probe fails with EINVAL ("stream 768 already in tree",
// arm_smmu_insert_master), measured here. An initramfs
// holds everything the guest runs (busybox, the VFIO modules, the static
// aarch64 vfio-lab, topology.json): the host's x86 programs cannot run there.
//
// Results leave the guest on a virtio console (/dev/hvc0, a host file), so
// kernel messages on the PL011 console never interleave with them.
//
// The GICv3 boot also runs the published aarch64 napi addon (the file
// `pnpm release:check` builds into @vfiokit/vfio-core-linux-arm64-gnu) in
// Debian's own arm64 Node: the addon and napi-cases.js ride in the
// initramfs (about 1 MB), Node and its libraries (about 120 MB, the release
// check's cached root) come read-only over 9p, and its lines leave on a
// second virtio console (/dev/hvc1).

import { BIND_VFIO_SH, initPrelude, packInitramfs } from '../initramfs';
import { KernelModule } from '../modules';
import { LabTopology, X86_TOPOLOGY, x86TopologyArgs } from '../x86/topology';
import { LabHostFacts } from '../x86/hosts';

export const MARK = 'vfiokit-arm64:';

/**
 * The x86 roles, with `blocked` and `blocked-peer` as functions 0 and 1
 * behind a second root port (00:06.0), and without `bus-reset` (only the
 * x86 profile's `vfiokit upgrade` case uses it).
 */
export const ARM64_TOPOLOGY: LabTopology = {
  ...X86_TOPOLOGY,
  name: 'arm64-virt-edu',
  // Measured: the lab's arm64 guest binds shpchp to the pcie-pci-bridge at
  // 00:04.0, so bridge-a's group is not viable there.
  bridgeDriver: 'shpchp',
  devices: X86_TOPOLOGY.devices.filter((d) => d.role !== 'bus-reset').map((d) =>
    d.role === 'blocked'
      ? { ...d, bdf: '0000:03:00.0', groupBridges: [] }
      : d.role === 'blocked-peer'
        ? { ...d, bdf: '0000:03:00.1', groupBridges: [] }
        : d,
  ),
};

/** One boot of the arm64 profile: the GIC decides whether MSIs are isolated. */
export interface Arm64Host {
  readonly name: string;
  /** `virt` machine's gic-version: 3 has an ITS (MSI isolation), 2 has only GICv2m (none). */
  readonly gicVersion: 2 | 3;
  readonly facts: LabHostFacts;
  /** This boot also runs the aarch64 napi addon in Debian's Node (napi-cases.ts). */
  readonly napi: boolean;
}

export const ARM64_HOSTS: readonly Arm64Host[] = [
  { name: 'gicv3-its', gicVersion: 3, facts: { iommu: 'smmuv3', msiIsolated: true, allowUnsafeInterrupts: false }, napi: true },
  // Without MSI isolation the addon could only show the EPERM the suite already compares.
  { name: 'gicv2', gicVersion: 2, facts: { iommu: 'smmuv3', msiIsolated: false, allowUnsafeInterrupts: false }, napi: false },
];

/** The virtio console the results go out on, at a slot the topology leaves free. */
const RESULTS_SLOT = '0x8';
/** The 9p export of Debian's arm64 Node, at another free slot. */
const NODE_ROOT_SLOT = '0x9';
/** Its 9p mount tag, and where the guest mounts it. */
export const TAG_NODE_ROOT = 'noderoot';
const GUEST_NODE_ROOT = '/node';
/** Where the addon and the scripts sit in the initramfs. */
const GUEST_NAPI_DIR = '/napi';
export const GUEST_ADDON = `${GUEST_NAPI_DIR}/vfio-core.linux-arm64-gnu.node`;
/** napi-cases.js and the release check's mock-cases.js it requires, at their places relative to each other in dist/. */
export const GUEST_NAPI_SCRIPT = `${GUEST_NAPI_DIR}/lab/arm64/napi-cases.js`;
export const GUEST_MOCK_CASES = `${GUEST_NAPI_DIR}/release/mock-cases.js`;

export interface QemuPaths {
  readonly vmlinuz: string;
  readonly initramfs: string;
  /** Host file the guest's /dev/hvc0 writes to. */
  readonly results: string;
  /** With `napi`: Debian's arm64 Node root (exported read-only) and the host file /dev/hvc1 writes to. */
  readonly napi?: { readonly nodeRoot: string; readonly results: string };
}

export function qemuArgs(host: Arm64Host, paths: QemuPaths): string[] {
  return [
    '-M', `virt,iommu=smmuv3,gic-version=${host.gicVersion}`,
    '-accel', 'tcg',
    // cortex-a57, not max: TCG emulates max's pointer authentication in
    // software, which slows every function return of the guest kernel.
    '-cpu', 'cortex-a57',
    '-smp', '2',
    '-m', '1024',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', paths.vmlinuz,
    '-initrd', paths.initramfs,
    // loglevel=5 so the console check sees KERN_WARNING (see ../x86/index.ts).
    '-append', 'console=ttyAMA0 panic=-1 loglevel=5',
    ...x86TopologyArgs(undefined, 'root-port-functions', 'bridge-pair', 'no-bus-reset-port'),
    '-device', `virtio-serial-pci,id=vser,bus=pcie.0,addr=${RESULTS_SLOT}`,
    '-chardev', `file,id=results,path=${paths.results}`,
    '-device', 'virtconsole,bus=vser.0,chardev=results',
    ...(paths.napi === undefined
      ? []
      : [
          '-chardev', `file,id=napi,path=${paths.napi.results}`,
          '-device', 'virtconsole,bus=vser.0,chardev=napi',
          '-fsdev', `local,id=${TAG_NODE_ROOT},path=${paths.napi.nodeRoot},security_model=none,readonly=on`,
          '-device', `virtio-9p-pci,fsdev=${TAG_NODE_ROOT},mount_tag=${TAG_NODE_ROOT},bus=pcie.0,addr=${NODE_ROOT_SLOT}`,
        ]),
  ];
}

/**
 * Shell lines that print, marked, what the kernel exposes on Arm about
 * MSI isolation and the SMMU: each group's reserved regions, the MSI
 * controllers the kernel probed (ITS or GICv2m), and its own words.
 */
function factsScript(): string {
  return `for g in /sys/kernel/iommu_groups/*; do
  while read -r line; do mark "group=\${g##*/} reserved=$line"; done < $g/reserved_regions
done
for d in /sys/kernel/iommu_groups/*/devices/*; do
  g=\${d#/sys/kernel/iommu_groups/}; drv=$(readlink $d/driver); mark "member=group \${g%%/*} \${d##*/} driver=\${drv##*/}"
done
for f in /sys/module/vfio_iommu_type1/parameters/*; do mark "param=\${f##*/}=$(cat $f)"; done
dmesg | grep -iE 'smmu|its|gicv2m|v2m|msi|vfio|iommu|stream|pcieport|00:04.0' | sed 's/^\\[[^]]*\\] //' | while read -r line; do mark "dmesg=$line"; done
while read -r line; do mark "interrupts=$line"; done < /proc/interrupts
for n in /sys/firmware/devicetree/base/intc*/*; do [ -f $n/compatible ] && mark "dt=\${n#/sys/firmware/devicetree/base/} $(tr '\\0' ' ' < $n/compatible)"; done
`;
}

/**
 * Debian's arm64 Node on the addon, at its own paths: the initramfs links
 * /usr, /lib/aarch64-linux-gnu and the dynamic loader into the 9p mount
 * (Debian's Node reads builtins it ships apart, such as
 * /usr/share/nodejs/cjs-module-lexer, by absolute path, and aborts at start
 * without them). The guest's uptime before and after says what it cost.
 */
function napiScript(bdf: string): string {
  return `mark stage=napi
read napi_start _ < /proc/uptime
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose ${TAG_NODE_ROOT} ${GUEST_NODE_ROOT}; then
  mark "napi-exit=mount"
elif [ ! -c /dev/hvc1 ]; then
  mark "napi-exit=no-hvc1"
else
  /usr/bin/node ${GUEST_NAPI_SCRIPT} ${GUEST_ADDON} kernel ${bdf} > /dev/hvc1
  mark "napi-exit=$?"
fi
read napi_end _ < /proc/uptime
mark "napi-uptime=$napi_start $napi_end"
`;
}

/** The edu the napi cases drive: the topology's `solo`, alone in its group and bound to vfio-pci. */
export function napiDevice(topology: LabTopology): string {
  const solo = topology.devices.find((d) => d.role === 'solo');
  if (solo === undefined) throw new Error(`topology ${topology.name} has no 'solo' edu for the napi cases`);
  return solo.bdf;
}

export function initScript(modules: readonly KernelModule[], topology: LabTopology, napi = false): string {
  const loads = modules
    .map((m) => `insmod /lib/modules/${m.path}${m.name === 'vfio_iommu_type1' ? ` dma_entry_limit=${topology.dmaEntryLimit}` : ''} || fail "insmod ${m.name} failed"`)
    .join('\n');
  const binds = topology.devices
    .filter((d) => d.driver === 'vfio-pci')
    .map((d) => `bind_vfio ${d.bdf}`)
    .join('\n');
  return `${initPrelude('packages/testkit/src/lab/arm64/guest.ts', MARK, ['/proc', '/sys', '/dev', '/tmp', ...(napi ? [GUEST_NODE_ROOT] : [])])}
mark stage=modules
${loads}

mark stage=bind
${BIND_VFIO_SH}${binds}
[ -c /dev/hvc0 ] || fail "no /dev/hvc0 for the results"

mark stage=run
/bin/vfio-lab x86 --backend kernel --topology /etc/topology.json --out /dev/hvc0
mark "run-exit=$?"
${napi ? napiScript(napiDevice(topology)) : ''}${factsScript()}sync
mark done
poweroff -f
sleep 10
`;
}

/** What the napi cases need in the initramfs: the aarch64 addon and the two scripts (Node comes over 9p). */
export interface NapiFiles {
  readonly addon: Buffer;
  readonly napiCases: Buffer;
  readonly mockCases: Buffer;
}

export function buildInitramfs(busybox: Buffer, labBinary: Buffer, modules: readonly KernelModule[], topology: LabTopology & { host: LabHostFacts }, napi?: NapiFiles): Buffer {
  const rel = (p: string) => p.slice(1);
  return packInitramfs({
    busybox,
    init: initScript(modules, topology, napi !== undefined),
    modules,
    files: [
      { kind: 'dir', path: 'etc' },
      { kind: 'file', path: 'bin/vfio-lab', data: labBinary, mode: 0o755 },
      { kind: 'file', path: 'etc/topology.json', data: Buffer.from(`${JSON.stringify(topology, null, 2)}\n`), mode: 0o644 },
      ...(napi === undefined
        ? []
        : [
            // Debian's Node root, as / would hold it (see napiScript); lib
            // first, as the module entries that would make it come after.
            { kind: 'dir' as const, path: 'lib' },
            { kind: 'symlink' as const, path: 'usr', target: `${GUEST_NODE_ROOT}/usr` },
            { kind: 'symlink' as const, path: 'lib/aarch64-linux-gnu', target: `${GUEST_NODE_ROOT}/lib/aarch64-linux-gnu` },
            { kind: 'symlink' as const, path: 'lib/ld-linux-aarch64.so.1', target: `${GUEST_NODE_ROOT}/lib/ld-linux-aarch64.so.1` },
            { kind: 'dir' as const, path: rel(GUEST_NAPI_DIR) },
            { kind: 'dir' as const, path: rel(`${GUEST_NAPI_DIR}/lab`) },
            { kind: 'dir' as const, path: rel(`${GUEST_NAPI_DIR}/lab/arm64`) },
            { kind: 'dir' as const, path: rel(`${GUEST_NAPI_DIR}/release`) },
            { kind: 'file' as const, path: rel(GUEST_ADDON), data: napi.addon, mode: 0o755 },
            { kind: 'file' as const, path: rel(GUEST_NAPI_SCRIPT), data: napi.napiCases, mode: 0o644 },
            { kind: 'file' as const, path: rel(GUEST_MOCK_CASES), data: napi.mockCases, mode: 0o644 },
          ]),
    ],
  });
}

/** The marked lines of the console, without the mark. */
export function marks(console: string): string[] {
  return console
    .split(/\r?\n/)
    .filter((l) => l.startsWith(MARK))
    .map((l) => l.slice(MARK.length).trim());
}
