import test from 'ava';
import { parseJson, vfiokit } from '../testing/run-cli';

test('show of the console GPU names the safety rule and the fix for its group', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'show', '01:00.0']);
  t.is(run.code, 0);
  const lines = run.stdout.split('\n');
  t.is(lines[0], '0000:01:00.0  VGA compatible controller: NVIDIA Corporation GP104 [GeForce GTX 1080]');
  t.true(lines.includes("  host needs it    it drives the boot console (boot_vga = 1) (rule 'console-display'; override: --force console-display)"));
  t.true(lines.includes('  reserved regions 0xfee00000-0xfeefffff msi'));
  t.true(lines.includes('                   BAR1 mem 0xf0000000 256 MiB 64-bit prefetchable'));
  t.true(lines.some((l) => l.startsWith('  viability        group 1 is not viable: ') && l.endsWith("run 'vfiokit bind --force console-display 0000:01:00.0' to move the whole group to vfio-pci, waiving a safety rule: only if the host can do without the device")));
});

test('show of an SR-IOV physical function with VFs enabled does not tell the user to run a bind that would refuse it', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', 'show', '0000:3b:00.0']);
  t.is(run.code, 0);
  const line = run.stdout.split('\n').find((l) => l.startsWith('  viability '))!;
  t.is(
    line,
    "  viability        group 2 is not viable: 0000:3b:00.0 is bound to i40e; 'vfiokit bind' would refuse it: 0000:3b:00.0 is an SR-IOV physical function with 4 VFs enabled: moving it off i40e would tear them down, and vfio-pci refuses a PF whose VFs remain; disable them first (echo 0 > /sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs), or assign a VF instead",
  );
});

test('show --json of an SR-IOV physical function lists its virtual functions', async (t) => {
  const run = await vfiokit(['--mock', 'sriov-server', '--json', 'show', '0000:3b:00.0']);
  t.is(run.code, 0);
  const body = parseJson<{ device: { sriov: { totalVfs: number; numVfs: number; virtualFunctions: string[] }; numaNode: number } }>(run);
  t.is(body.device.sriov.totalVfs, 64);
  t.is(body.device.sriov.numVfs, body.device.sriov.virtualFunctions.length);
  t.is(body.device.numaNode, 1);
});

test('show of a group number gives the group with its viability summary', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'show', '1']);
  t.is(run.code, 0);
  const body = parseJson<{ group: { id: number; viability: { viable: boolean; blocking: { address: string }[] }; reservedRegions: unknown[] } }>(run);
  t.is(body.group.id, 1);
  t.false(body.group.viability.viable);
  t.deepEqual(body.group.reservedRegions, [{ start: '0xfee00000', end: '0xfeefffff', type: 'msi' }]);
});

test('show of an address that is not on the host exits 3 with a hint', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'show', '0000:09:00.0']);
  t.is(run.code, 3);
  t.is(run.stdout, '');
  t.is(run.stderr, "vfiokit: no PCI device 0000:09:00.0 on this host (not in /sys/bus/pci/devices)\nhint: list the host's devices with 'vfiokit ls'\n");
});

test('show of a malformed address exits 4', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'show', '01:00']);
  t.is(run.code, 4);
  t.regex(run.stderr, /^vfiokit: '01:00' is not a PCI address/);
});

test('show of a missing group in --json mode prints the error as JSON with its code', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--json', 'show', '99']);
  t.is(run.code, 3);
  t.deepEqual(JSON.parse(run.stderr), {
    error: { code: 'HOST_GROUP_NOT_FOUND', message: 'no IOMMU group 99 on this host (not in /sys/kernel/iommu_groups)', hint: "list the host's IOMMU groups with 'vfiokit ls'", exitCode: 3, details: [] },
  });
});

test('a --debug run prints the stack trace after the message', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', '--debug', 'show', '99']);
  t.is(run.code, 3);
  t.regex(run.stderr, /\n {4}at findGroup /);
});
