// The pseries guest: QEMU's `pseries` machine under TCG with Debian's 6.12
// ppc64el kernel, one `edu` per PCI host bridge (PHB), and an initramfs that
// holds everything the guest runs (busybox, the VFIO modules, the static
// ppc64le vfio-lab binary): no 9p, the host's x86 programs cannot run there.
//
// Each PHB of a pseries machine is one PE: one IOMMU group and one PCI
// domain (`0000:`, `0001:`). Results leave the guest on a second console,
// /dev/hvc1 (a `spapr-vty` whose chardev is a host file), so kernel messages
// on hvc0 never interleave with them.

import { BIND_VFIO_SH, initPrelude, packInitramfs } from '../initramfs';
import { KernelModule } from '../modules';

export const MARK = 'vfiokit-pseries:';

/**
 * A guest layout: how many PHBs, each with an edu at slot 2; the first PHB
 * may hold `functions` edus as functions of that slot (one PE, one group).
 */
export interface PseriesTopology {
  readonly name: string;
  readonly phbs: number;
  /** edu functions at slot 2 of the first PHB (default 1). */
  readonly functions?: number;
}

export const TOPOLOGIES: readonly PseriesTopology[] = [
  { name: 'one-phb', phbs: 1 },
  { name: 'two-phbs', phbs: 2 },
  // Two devices in one group: the guest runs only the cases about that.
  { name: 'two-functions', phbs: 1, functions: 2 },
];

/** The BDF QEMU gives edu function `fn` on PHB `i` (domain i, bus 0, slot 2). */
export function eduBdf(phb: number, fn = 0): string {
  return `${phb.toString(16).padStart(4, '0')}:00:02.${fn}`;
}

/** Every edu of the topology, in domain and function order. */
export function eduBdfs(topology: PseriesTopology): string[] {
  const functions = topology.functions ?? 1;
  return Array.from({ length: topology.phbs }, (_, i) => Array.from({ length: i === 0 ? functions : 1 }, (_, f) => eduBdf(i, f))).flat();
}

export interface QemuPaths {
  readonly vmlinux: string;
  readonly initramfs: string;
  /** Host file the guest's /dev/hvc1 writes to. */
  readonly results: string;
}

export function qemuArgs(topology: PseriesTopology, paths: QemuPaths): string[] {
  // TCG implements none of the Spectre mitigations these capabilities ask
  // for; saying so keeps QEMU from warning on every boot.
  const machine = 'pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off';
  // dma_mask: edu's default 28-bit mask could not reach a 64-bit window
  // (QEMU places dynamic windows at 1 << 59).
  const edu = (bus: string, fn?: number, multifunction = false): string[] => [
    '-device',
    `edu,bus=${bus},addr=${fn === undefined ? '2' : `2.${fn}`}${multifunction ? ',multifunction=on' : ''},dma_mask=0xffffffffffffffff`,
  ];
  const functions = topology.functions ?? 1;
  const args = [
    '-M', machine,
    '-accel', 'tcg',
    '-m', '1024',
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', paths.vmlinux,
    '-initrd', paths.initramfs,
    '-append', `console=hvc0 loglevel=5 panic=-1 vfiokit_phbs=${topology.phbs}`,
    '-chardev', `file,id=results,path=${paths.results}`,
    '-device', 'spapr-vty,chardev=results',
    ...(functions === 1 ? edu('pci.0') : Array.from({ length: functions }, (_, f) => edu('pci.0', f, f === 0)).flat()),
  ];
  for (let i = 1; i < topology.phbs; i++) {
    args.push('-device', `spapr-pci-host-bridge,index=${i},id=phb${i}`, ...edu(`phb${i}.0`));
  }
  return args;
}

export function initScript(modules: readonly KernelModule[], topology: PseriesTopology): string {
  const loads = modules.map((m) => `insmod /lib/modules/${m.path} || fail "insmod ${m.name} failed"`).join('\n');
  const binds = eduBdfs(topology).map((bdf) => `bind_vfio ${bdf}`).join('\n');
  const functions = topology.functions ?? 1;
  return `${initPrelude('packages/testkit/src/lab/pseries/guest.ts', MARK, ['/proc', '/sys', '/dev', '/tmp'])}
mark stage=modules
${loads}

mark stage=bind
${BIND_VFIO_SH}${binds}
[ -c /dev/hvc1 ] || fail "no /dev/hvc1 for the results"

mark stage=run
/bin/vfio-lab spapr --backend kernel --phbs ${topology.phbs}${functions > 1 ? ` --functions ${functions}` : ''} --out /dev/hvc1
mark "run-exit=$?"
# What the firmware offered for dynamic windows (KERN_INFO, below the
# console's loglevel): the mock's SpaprProfile comes from this line.
dmesg | grep -F "ibm,query-pe-dma-windows" | tail -n 1
sync
mark done
poweroff -f
sleep 10
`;
}

export function buildInitramfs(busybox: Buffer, labBinary: Buffer, modules: readonly KernelModule[], topology: PseriesTopology): Buffer {
  return packInitramfs({
    busybox,
    init: initScript(modules, topology),
    modules,
    files: [{ kind: 'file', path: 'bin/vfio-lab', data: labBinary, mode: 0o755 }],
  });
}

export interface GuestMarks {
  readonly failure?: string;
  readonly reachedRun: boolean;
  readonly done: boolean;
  readonly bound: readonly string[];
  readonly lastStage?: string;
}

export function readMarks(console: string): GuestMarks {
  const marks = console
    .split(/\r?\n/)
    .filter((l) => l.startsWith(MARK))
    .map((l) => l.slice(MARK.length).trim());
  const failure = marks.find((m) => m.startsWith('fail='))?.slice(5);
  return {
    ...(failure !== undefined ? { failure } : {}),
    reachedRun: marks.includes('stage=run'),
    done: marks.includes('done'),
    bound: marks.filter((m) => m.startsWith('bound=')),
    ...(marks.some((m) => m.startsWith('stage=')) ? { lastStage: marks.filter((m) => m.startsWith('stage=')).at(-1)!.slice(6) } : {}),
  };
}
