import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { qemuBuild } from '@vfiokit/testkit';
import { EXAMPLES, parseJson, vfiokit } from '../testing/run-cli';

function specFile(t: { teardown(fn: () => void): void }, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-spec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'guest.yaml');
  writeFileSync(file, text);
  return file;
}

interface PlanJson {
  ok: boolean;
  groups: { id: number; functions: { address: string; role: string }[] }[];
  domains: { kind: string; id?: string; bridge?: { id: string }; devices: { functions: { hostAddress: string; guestFunction: number }[] }[] }[];
  dma: { policy: string; topology: { pinnedBytes: string; containers: { groups: number[] }[] } };
  findings: { kind: string; code: string; subject: string }[];
  actions: string[];
}

test('plan of the USB controller with enough locked memory is ready once bound, on one root port', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited']);
  t.is(run.code, 0);
  t.is(run.stderr, '');
  const lines = run.stdout.split('\n');
  t.is(lines[0], 'guest usb-guest: q35, 4 GiB RAM, 2 vCPUs, guest IOMMU none');
  t.is(lines[1], 'status: ready once the actions below are done');
  t.true(lines.includes('  pcie-root-port rp0 (chassis 1) <- group 11'));
  t.true(lines.includes('    00.0 = host 0000:04:00.0'));
  t.deepEqual(lines.slice(-3, -1), ['before starting the guest, run:', '  vfiokit bind 0000:04:00.0']);
});

test('plan --format json gives the groups, domains and the pinned budget', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'plan', join(EXAMPLES, 'gpu-passthrough.yaml'), '--force', 'console-display', '--memlock', '32G', '--format', 'json']);
  t.is(run.code, 0);
  const plan = parseJson<PlanJson>(run);
  t.true(plan.ok);
  t.deepEqual(plan.groups[0]!.functions.map((f) => [f.address, f.role]), [
    ['0000:01:00.0', 'requested'],
    ['0000:01:00.1', 'companion'],
  ]);
  t.deepEqual(plan.domains[0]!.devices[0]!.functions, [
    { hostAddress: '0000:01:00.0', guestFunction: 0 },
    { hostAddress: '0000:01:00.1', guestFunction: 1 },
  ]);
  t.is(plan.dma.policy, 'identity');
  t.is(plan.dma.topology.pinnedBytes, '0x400000000');
});

test('plan behind a guest IOMMU gives each VF its own container', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', '--json', 'plan', join(EXAMPLES, 'sriov-vfs-viommu.yaml'), '--memlock', 'unlimited']);
  t.is(run.code, 0);
  const plan = parseJson<PlanJson>(run);
  t.is(plan.dma.policy, 'shadow');
  t.is(plan.dma.topology.containers.length, 2);
  t.is(plan.dma.topology.pinnedBytes, '0x400000000');
});

test('plan of a pseries guest puts each PE on a PHB of its own', async (t) => {
  const run = await vfiokit(['--mock', 'power8', '--json', 'plan', join(EXAMPLES, 'power8-tesla.yaml'), '--memlock', 'unlimited']);
  const plan = parseJson<PlanJson>(run);
  t.deepEqual(plan.domains.map((d) => [d.kind, d.bridge!.id]), [
    ['spapr-pci-host-bridge', 'phb1'],
    ['spapr-pci-host-bridge', 'phb2'],
  ]);
  t.is(plan.dma.policy, 'spapr-tce');
});

test('a plan over the locked-memory limit exits 5 with the number to raise it to', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml')]);
  t.is(run.code, 5);
  t.regex(run.stdout, /^status: REFUSED \(1 reason below\)$/m);
  t.regex(run.stderr, /^vfiokit: guest usb-guest cannot be planned on this host: guest: 1 container\(s\) may pin 4 GiB .*raise the limit .* to at least 5368709120 bytes\n$/);
});

test('a spec naming a device the host lacks exits 3 (not found) naming the field', async (t) => {
  const file = specFile(t, 'name: g\nmemory: 1G\ndevices: [0000:42:00.0]\n');
  const run = await vfiokit(['--mock', 'workstation', '--json', 'plan', file, '--memlock', 'unlimited']);
  t.is(run.code, 3);
  const plan = parseJson<PlanJson>(run);
  t.deepEqual(plan.findings.filter((f) => f.kind === 'refusal').map((f) => [f.code, f.subject]), [['DEVICE_NOT_FOUND', 'devices[0]']]);
  t.is(JSON.parse(run.stderr).error.code, 'PLAN_DEVICE_NOT_FOUND');
});

test('malformed YAML exits 4 naming the line', async (t) => {
  const file = specFile(t, 'name: g\nmemory: [1G\n');
  const run = await vfiokit(['--mock', 'workstation', 'plan', file]);
  t.is(run.code, 4);
  t.is(run.stdout, '');
  t.regex(run.stderr, /^vfiokit: .*guest\.yaml:3:1: not valid YAML: /);
});

test('a spec with a wrong field exits 4 naming the field', async (t) => {
  const file = specFile(t, 'name: g\nmemory: 1G\ncpus: many\ndevices: [0000:04:00.0]\n');
  const run = await vfiokit(['--mock', 'workstation', 'plan', file]);
  t.is(run.code, 4);
  t.regex(run.stderr, /guest\.yaml:3:7: cpus: expected a number of vCPUs\nhint: see packages\/cli\/examples\/\*\.yaml/);
});

test('a spec file that does not exist exits 3', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'plan', '/nonexistent/guest.yaml']);
  t.is(run.code, 3);
  t.regex(run.stderr, /^vfiokit: guest spec \/nonexistent\/guest\.yaml does not exist\n/);
});

test('plan --format qemu-args gives each VF of the spec a root port of its own behind intel-iommu', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', '--json', 'plan', join(EXAMPLES, 'sriov-vfs-viommu.yaml'), '--memlock', 'unlimited', '--format', 'qemu-args']);
  t.is(run.code, 0, run.stderr);
  const { argv } = parseJson<{ argv: string[] }>(run);
  const devices = argv.filter((_, i) => argv[i - 1] === '-device');
  t.deepEqual(devices, [
    'intel-iommu,intremap=on,caching-mode=on',
    'pcie-root-port,id=rp0,chassis=1,bus=pcie.0,addr=0x2.0,multifunction=on',
    'pcie-root-port,id=rp1,chassis=2,bus=pcie.0,addr=0x2.1',
    'vfio-pci,host=0000:3b:02.0,id=hostdev-0000-3b-02-0,bus=rp0,addr=0x0.0',
    'vfio-pci,host=0000:3b:02.1,id=hostdev-0000-3b-02-1,bus=rp1,addr=0x0.0',
  ]);
  t.deepEqual(argv.slice(0, 3), ['qemu-system-x86_64', '-name', 'guest=nfv-guest']);
});

test('plan --format qemu-args of a refused plan prints no command line and exits 5', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'plan', join(EXAMPLES, 'gpu-passthrough.yaml'), '--memlock', 'unlimited', '--format', 'qemu-args']);
  t.is(run.code, 5);
  t.is(run.stdout, '');
  t.regex(run.stderr, /^vfiokit: guest gpu-guest cannot be planned on this host: 0000:01:00\.0: it drives the boot console/);
});

test('plan --format qemu-args of the pseries guest puts each PE on its own spapr-pci-host-bridge', async (t) => {
  const run = await vfiokit(['--mock', 'power8', 'plan', join(EXAMPLES, 'power8-tesla.yaml'), '--memlock', 'unlimited', '--format', 'qemu-args']);
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.split('\n').map((l) => l.trim().replace(/ \\$/, ''));
  t.is(lines[0], 'qemu-system-ppc64');
  t.deepEqual(lines.filter((l) => l.startsWith('-device')), [
    '-device spapr-pci-host-bridge,index=1,id=phb1',
    '-device spapr-pci-host-bridge,index=2,id=phb2',
    '-device vfio-pci,host=0002:01:00.0,id=hostdev-0002-01-00-0,bus=phb1.0,addr=0x0.0',
    '-device vfio-pci,host=0003:01:00.0,id=hostdev-0003-01-00-0,bus=phb2.0,addr=0x0.0,multifunction=on',
    '-device vfio-pci,host=0003:01:00.1,id=hostdev-0003-01-00-1,bus=phb2.0,addr=0x0.1',
  ]);
});

test('plan --qmp and --spare-root-ports add the monitor and empty hot-plug ports to the command line', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited', '--format', 'qemu-args', '--qmp', '/run/vm1/qmp.sock', '--spare-root-ports', '2']);
  t.is(run.code, 0, run.stderr);
  const { argv } = parseJson<{ argv: string[] }>(run);
  t.is(argv[argv.indexOf('-qmp') + 1], 'unix:/run/vm1/qmp.sock,server=on,wait=off');
  t.deepEqual(argv.filter((a) => a.startsWith('pcie-root-port,')).map((a) => a.split(',')[1]), ['id=rp0', 'id=rp1', 'id=rp2']);
});

interface BackendJson {
  backend: { backend: string; reasons: string[] };
  qemu: string[] | null;
}

test('on an iommufd host with QEMU 10.0 the plan takes iommufd and its QEMU line binds the device by cdev to -object iommufd', async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const qemu = qemuBuild('10.0').binary;
  const file = join(EXAMPLES, 'usb-controller.yaml');
  const run = await vfiokit(['--mock', 'iommufd-workstation', 'plan', file, '--memlock', 'unlimited', '--qemu', qemu, '--format', 'json']);
  t.is(run.code, 0, run.stderr);
  const plan = parseJson<BackendJson>(run);
  t.is(plan.backend.backend, 'iommufd');
  t.is(plan.qemu![0], qemu);
  t.true(plan.qemu!.includes('iommufd,id=iommufd0'));
  t.true(plan.qemu!.some((a) => a.startsWith('vfio-pci,host=0000:04:00.0,') && a.endsWith(',iommufd=iommufd0')));
  const text = await vfiokit(['--mock', 'iommufd-workstation', 'plan', file, '--memlock', 'unlimited', '--qemu', qemu]);
  t.true(text.stdout.includes('passthrough: iommufd (-object iommufd, each device by its VFIO cdev)\n'));
});

test("on an iommufd host with the system's QEMU 7.2 the plan keeps the VFIO container and says QEMU is too old", async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const qemu = qemuBuild('7.2').binary;
  const run = await vfiokit(['--mock', 'iommufd-workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited', '--qemu', qemu, '--format', 'json']);
  t.is(run.code, 0, run.stderr);
  const plan = parseJson<BackendJson>(run);
  t.deepEqual(plan.backend, { backend: 'container', reasons: [`QEMU 7.2 (${qemu} --version) is too old: -object iommufd came in QEMU 8.2`] });
  t.false(plan.qemu!.some((a) => a.includes('iommufd')));
});

test('without /dev/iommu the plan keeps the VFIO container and says why, whatever QEMU is named', async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const run = await vfiokit(['--mock', 'workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited', '--qemu', '/nonexistent/qemu']);
  t.is(run.code, 0, run.stderr);
  t.true(run.stdout.includes("  not iommufd: no /dev/iommu: the kernel has no CONFIG_IOMMUFD (Debian's kernels are built without it) or the iommufd module is not loaded\n"));
});

test('a QEMU that is not installed keeps the VFIO container on an iommufd host and names the binary', async (t) => {
  // Runs the CLI and QEMU --version: seconds, more on a loaded machine.
  t.timeout(120_000);
  const run = await vfiokit(['--mock', 'iommufd-workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited', '--qemu', '/nonexistent/qemu']);
  t.is(run.code, 0, run.stderr);
  t.true(run.stdout.includes('  not iommufd: the QEMU version is unknown (/nonexistent/qemu --version: /nonexistent/qemu is not installed or not on PATH); iommufd needs QEMU 8.2 or newer\n'));
});
