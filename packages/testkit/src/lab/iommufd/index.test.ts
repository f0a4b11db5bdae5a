import test from 'ava';
import { CaseLine, ResultsFile } from '../conformance';
import { x86RootPortTopologyArgs, X86_ROOT_PORT_TOPOLOGY } from '../x86/topology';
import { MARK } from '../initramfs';
import {
  BIND_REFUSED,
  BRIDGED_EDU,
  bridgeProbeReport,
  compareCompat,
  COMPAT_DIFFERENCES,
  IOMMUFD_SELFTEST_HOST,
  IOMMUFD_VIRTIO_HOST,
  IOMMUFD_VTD_HOST,
  kernelVersion,
  runScript,
  selftestRunScript,
  VIRTIO_RUNS,
  virtioBridgeProbe,
  virtioHostFor,
  virtioRunScript,
} from './index';

function results(backend: string, cases: Record<string, string>): ResultsFile {
  const lines: CaseLine[] = Object.entries(cases).map(([name, result]) => ({
    kind: 'case',
    name,
    steps: [{ call: 'SET_IOMMU TYPE1v2 again', result }],
    checks: [],
    aborted: null,
  }));
  return { backend, suite: 'x86', cases: lines, complete: true };
}

test('a compat case answering as legacy type1 passes under its own name', (t) => {
  const [r] = compareCompat(results('kernel', { same: 'ok' }), results('mock', { same: 'ok' }), {});
  t.deepEqual(r, { name: 'same', ok: true });
});

test('an unlisted difference between the compat container and legacy type1 fails with both sides shown', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'EINVAL' }), {});
  t.false(r!.ok);
  t.true(r!.detail!.some((l) => l.includes('kernel: ok')) && r!.detail!.some((l) => l.includes('mock  : EINVAL')));
});

test('a listed difference passes while it still differs, its name carrying the reason and its detail the steps', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'EINVAL' }), { c: 'repeating it succeeds' });
  t.true(r!.ok);
  t.is(r!.name, 'c (differs from legacy type1, as the kernel explains: repeating it succeeds)');
  t.true(r!.detail!.some((l) => l.includes('compat: ok')));
});

test('a listed difference that no longer differs fails, so the list cannot go stale', (t) => {
  const [r] = compareCompat(results('kernel', { c: 'ok' }), results('mock', { c: 'ok' }), { c: 'repeating it succeeds' });
  t.false(r!.ok);
  t.regex(r!.detail![0]!, /remove it from the list/);
});

test('a listed difference whose case no longer runs under that name fails, naming the entry', (t) => {
  const reports = compareCompat(results('kernel', { renamed: 'ok' }), results('mock', { renamed: 'EINVAL' }), { old: 'repeating it succeeds' });
  t.deepEqual(
    reports.map((r) => [r.name, r.ok]),
    [
      ['renamed', false],
      ['COMPAT_DIFFERENCES entry "old"', false],
    ],
  );
  t.regex(reports[1]!.detail![0]!, /renamed or dropped it; rename or remove the entry/);
});

test('every listed compat difference has a reason naming where in the kernel it comes from', (t) => {
  for (const [name, why] of Object.entries(COMPAT_DIFFERENCES)) {
    t.regex(why, /\b(VC|IOPT|GROUP|iommufd_|iopt_|vfio_)/, name);
  }
});

test('the guest script runs the iommufd suite and the x86 suite on the kernel, then records the iommufd nodes', (t) => {
  const ctx = { repoRoot: '/r', cacheDir: '/c', outDir: '/o', nodePath: '/n', guestTimeoutMs: 1, log: () => {} };
  const script = runScript(ctx, IOMMUFD_VTD_HOST, '/q/qemu-system-x86_64');
  const iommufd = script.indexOf('vfio-lab iommufd --backend kernel');
  const x86 = script.indexOf('vfio-lab x86 --backend kernel');
  t.true(iommufd > 0 && x86 > iommufd);
  t.regex(script, /ls -l \/dev\/iommu/);
  t.regex(script, /VFIOKIT_LAB_QEMU_IOMMUFD='\/q\/qemu-system-x86_64' .* \.iommufd-lab\.js/);
});

test('the selftest guest has no IOMMU device and runs only the iommufd-selftest suite on the kernel', (t) => {
  const ctx = { repoRoot: '/r', cacheDir: '/c', outDir: '/o', nodePath: '/n', guestTimeoutMs: 1, log: () => {} };
  const args = IOMMUFD_SELFTEST_HOST.topology!.args(IOMMUFD_SELFTEST_HOST.iommuDevice);
  t.false(args.some((a) => /iommu/.test(a)), args.join(' '));
  t.true(args.includes('edu,id=solo,bus=pcie.0,addr=0x3'));
  t.notRegex(IOMMUFD_SELFTEST_HOST.kernelArgs, /intel_iommu/);
  const script = selftestRunScript(ctx);
  t.regex(script, /vfio-lab iommufd-selftest --backend kernel --topology \S+ --out \S+conformance-iommufd-selftest-kernel\.jsonl/);
  t.notRegex(script, /vfio-lab (x86|iommufd) /);
});

test('the virtio-iommu guest runs the iommufd suite with unsafe interrupts refused, then allowed, each against its own topology file', (t) => {
  const ctx = { repoRoot: '/r', cacheDir: '/c', outDir: '/o/virtio', nodePath: '/n', guestTimeoutMs: 1, log: () => {} };
  const lines = virtioRunScript(ctx).split('\n');
  const at = (re: RegExp): number => lines.findIndex((l) => re.test(l));
  const off = at(/^echo 0 > \/sys\/module\/iommufd\/parameters\/allow_unsafe_interrupts$/);
  const first = at(/vfio-lab iommufd --backend kernel --topology \S+\/topology\.json --out \S+\/conformance-iommufd-kernel\.jsonl/);
  const on = at(/^echo 1 > \/sys\/module\/iommufd\/parameters\/allow_unsafe_interrupts$/);
  const second = at(/vfio-lab iommufd --backend kernel --topology \S+\/topology-unsafe\.json --out \S+\/conformance-iommufd-unsafe-kernel\.jsonl/);
  t.true(off >= 0 && off < first && first < on && on < second, lines.join('\n'));
  t.deepEqual(
    VIRTIO_RUNS.map((r) => r.allowUnsafeInterrupts),
    [false, true],
  );
});

test('the virtio-iommu guest puts nothing behind a PCIe-to-PCI bridge and keeps every role the iommufd suite opens', (t) => {
  t.is(IOMMUFD_VIRTIO_HOST.topology?.layout, X86_ROOT_PORT_TOPOLOGY);
  const args = x86RootPortTopologyArgs(IOMMUFD_VIRTIO_HOST.iommuDevice).join(' ');
  t.notRegex(args, /pcie-pci-bridge|pci-bridge/);
  t.regex(args, /^-device virtio-iommu-pci/);
  t.deepEqual(
    x86RootPortTopologyArgs('iommu').filter((a) => a !== '-device').map((a) => a.split(',')[1]),
    [undefined, 'id=solo', 'id=rp1', 'id=mf-0', 'id=mf-1', 'id=rp2', 'id=blocked', 'id=blocked-peer'],
  );
  const roles = X86_ROOT_PORT_TOPOLOGY.devices.map((d) => d.role);
  for (const role of ['solo', 'mf-0', 'mf-1', 'blocked', 'blocked-peer']) t.true(roles.includes(role), role);
  t.true(X86_ROOT_PORT_TOPOLOGY.devices.every((d) => d.groupBridges.length === 0));
});

test('without unsafe interrupts the expected stop is the refused bind, by ioctl or through CdevDevice, and nothing else', (t) => {
  t.regex('BIND_IOMMUFD failed with EPERM', BIND_REFUSED);
  t.regex('bind failed with EPERM', BIND_REFUSED);
  t.notRegex('BIND_IOMMUFD failed with EINVAL', BIND_REFUSED);
  t.notRegex('ATTACH_IOMMUFD_PT failed with EPERM', BIND_REFUSED);
});

test('the edu behind the PCIe-to-PCI bridge passes while it has no group and no driver, and fails naming the topology once it has them', (t) => {
  const line = (group: string, driver: string, id = '0x1234:0x11e8'): string =>
    `noise\r\n${MARK} behind-bridge ${BRIDGED_EDU} id=${id} group=${group} driver=${driver}\r\nmore`;
  t.true(bridgeProbeReport(line('', '')).ok);
  // No device at that address (cat fails): an empty group proves nothing.
  t.false(bridgeProbeReport(line('', '', ':')).ok);
  const fixed = bridgeProbeReport(line('9', 'vfio-pci'));
  t.false(fixed.ok);
  t.regex(fixed.detail!.join(' '), /group '9' and driver 'vfio-pci'.*X86_ROOT_PORT_TOPOLOGY/);
  t.false(bridgeProbeReport('no marker at all').ok);
});

test('the virtio-iommu guest adds the bridged edu after the root ports, so their buses stay 01 and 02', (t) => {
  const args = IOMMUFD_VIRTIO_HOST.topology!.args(IOMMUFD_VIRTIO_HOST.iommuDevice).filter((a) => a !== '-device');
  const at = (id: string): number => args.findIndex((a) => a.includes(`id=${id},`));
  t.true(at('rp2') > at('rp1') && at('br3') > at('rp2'));
  t.regex(args[at('br3')]!, /addr=0x7$/);
  t.regex(args[at('bridged')]!, /bus=br3,addr=0x1$/);
});

test('the version the mock is told is the lab kernel source version, without the "linux" build-kernel.sh writes', (t) => {
  t.is(kernelVersion({ vmlinuz: '/k/bzImage', moduleDir: '', release: 'linux 7.2.13-1' }), '7.2.13-1');
});

test('on 6.12 the virtio-iommu guest keeps the bridged edu and probes it; from 7.2 on, where the bridge takes every group down, it leaves both out', (t) => {
  t.true(virtioBridgeProbe('6.12.117-1'));
  t.false(virtioBridgeProbe('7.2.13-1'));
  t.false(virtioBridgeProbe('6.13.1'));
  t.is(virtioHostFor('6.12.117-1'), IOMMUFD_VIRTIO_HOST);
  const on72 = virtioHostFor('7.2.13-1');
  const args = on72.topology!.args(on72.iommuDevice).join(' ');
  t.notRegex(args, /pcie-pci-bridge|id=bridged/);
  t.is(args, x86RootPortTopologyArgs(on72.iommuDevice).join(' '));
  t.is(on72.topology?.layout, X86_ROOT_PORT_TOPOLOGY);
  const ctx = { repoRoot: '/r', cacheDir: '/c', outDir: '/o/virtio', nodePath: '/n', guestTimeoutMs: 1, log: () => {} };
  t.regex(virtioRunScript(ctx), /behind-bridge/);
  t.notRegex(virtioRunScript(ctx, false), /behind-bridge|drivers_probe/);
});
