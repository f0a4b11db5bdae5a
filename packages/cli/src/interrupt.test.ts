// A run stopped from outside ends cleanly: whatever the way (SIGINT,
// SIGTERM, SIGHUP, SIGKILL, an uncaught error, a closed stdout) and wherever
// it is stopped, no QEMU it started and no folder it made is left, and what
// it changed on the host is undone. Each run gets its own TMPDIR, so "nothing
// left" is that folder being empty and no process naming it. VFIOKIT_TEST_AT
// (checkpoint.ts) holds the run at a stage until it is stopped.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { eventually, processesMentioning, startTestQemu, testNeedingQemu } from '@vfiokit/testkit';
import { startVfiokit, vfiokit, parseJson } from './testing/run-cli';

const qemuTest = testNeedingQemu(test);

function scratch(t: ExecutionContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Way = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'SIGKILL' | 'crash';
const WAYS: readonly Way[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL', 'crash'];
/** The documented exit of each way (README, "Child processes and interruption"). */
const EXPECTED: Record<Way, { code: number | null; signal: NodeJS.Signals | null }> = {
  SIGINT: { code: 130, signal: null },
  SIGTERM: { code: 143, signal: null },
  SIGHUP: { code: 129, signal: null },
  SIGKILL: { code: null, signal: 'SIGKILL' },
  crash: { code: 1, signal: null },
};

/** Run `args` with its own TMPDIR, stop it at `stage` the `way` given, and check nothing is left. */
async function stopAt(t: ExecutionContext, args: readonly string[], stage: string, way: Way): Promise<string> {
  const tmp = scratch(t, 'vfiokit-interrupt-test-');
  const run = startVfiokit(args, { env: { TMPDIR: tmp, VFIOKIT_TEST_AT: way === 'crash' ? `${stage}:crash` : stage } });
  await run.waitForStderr(`vfiokit: at ${stage}\n`);
  if (way !== 'crash') process.kill(run.pid, way);
  const ended = await run.ended;
  t.deepEqual({ code: ended.code, signal: ended.signal }, EXPECTED[way], ended.stderr);
  if (way === 'crash') t.regex(ended.stderr, /vfiokit: internal error: Error: VFIOKIT_TEST_AT=.*:crash: a deliberate uncaught error/);
  else if (way !== 'SIGKILL') t.regex(ended.stderr, new RegExp(`vfiokit: interrupted by ${way}\n`));
  // After SIGKILL the reapers and the parent-death signal finish the job a moment later.
  await eventually(() => processesMentioning(tmp).length === 0, `no process names ${tmp} (QEMU, reapers): ${JSON.stringify(processesMentioning(tmp))}`);
  await eventually(() => readdirSync(tmp).length === 0, `${tmp} is empty: ${readdirSync(tmp).join(', ')}`);
  return ended.stdout;
}

/** The demo's stages, and whether reaching one needs QEMU. */
const DEMO_STAGES: readonly (readonly [string, boolean])[] = [
  ['host-opened', false],
  ['demo-bound', false],
  ['demo-qemu-up', true],
  ['demo-qemu-plugged', true],
];

for (const [stage, needsQemu] of DEMO_STAGES) {
  for (const way of WAYS) {
    (needsQemu ? qemuTest : test)(`demo stopped by ${way} at ${stage} leaves no QEMU and no folder`, async (t: ExecutionContext) => {
      const stdout = await stopAt(t, ['demo'], stage, way);
      // Unwound runs give the controller back to its driver on the way out.
      if (stage !== 'host-opened' && way !== 'SIGKILL' && way !== 'crash') t.regex(stdout, /group 11: gave back\n {6}0000:04:00\.0 {2}vfio-pci -> xhci_hcd\n/);
    });
  }
}

test('demo whose stdout is closed early (pnpm demo | head -c 2000) stops, exits 0 and leaves no QEMU and no folder', async (t) => {
  const tmp = scratch(t, 'vfiokit-interrupt-test-');
  const run = startVfiokit(['demo'], { env: { TMPDIR: tmp } });
  let seen = 0;
  run.child.stdout!.on('data', (d: string) => {
    seen += d.length;
    if (seen >= 2000) run.child.stdout!.destroy();
  });
  const ended = await run.ended;
  t.is(ended.code, 0, ended.stderr);
  t.regex(ended.stderr, /interrupted by its output was closed \(EPIPE\)|^$/);
  await eventually(() => processesMentioning(tmp).length === 0, `no process names ${tmp}`);
  await eventually(() => readdirSync(tmp).length === 0, `${tmp} is empty: ${readdirSync(tmp).join(', ')}`);
});

for (const way of WAYS) {
  test(`attach stopped by ${way} with its simulated host open leaves no folder`, async (t) => {
    await stopAt(t, ['--mock', 'workstation', 'attach', '--qmp', '/nonexistent/qmp.sock', '04:00.0'], 'host-opened', way);
  });
}

for (const way of WAYS) {
  qemuTest(`attach stopped by ${way} with its QMP session open leaves no process or folder and plugs nothing`, async (t) => {
    const qemu = await startTestQemu({ args: ['-device', 'pcie-root-port,id=rp1,chassis=1'] });
    t.teardown(() => qemu.stop());
    const host = ['--mock', 'workstation', '--mock-dir', scratch(t, 'vfiokit-interrupt-host-')];
    t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
    await stopAt(t, [...host, 'attach', '--qmp', qemu.socketPath, '04:00.0'], 'attach-connected', way);
    // Stopped before the hot-plug: QEMU holds no device from this run.
    // (query-pci lists nothing behind a root port in prelaunch; QOM does.)
    const { connectQmp, qomList } = await import('@vfiokit/qemu-bridge');
    const qmp = await connectQmp(qemu.address);
    t.teardown(() => qmp.close());
    const devices = (await qomList(qmp, '/machine/peripheral')).map((p) => p.name);
    t.deepEqual(devices.filter((id) => id.startsWith('hostdev-')), [], devices.join(', '));
  });
}

test('map interrupted by SIGINT mid-run exits 130 with every region it mapped unmapped, and the group left as it was', async (t) => {
  const host = ['--mock', 'workstation', '--mock-dir', scratch(t, 'vfiokit-interrupt-host-')];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  // 6000 regions: the first batch of 4096 is mapped, the second not yet.
  const stdout = await stopAt(t, [...host, 'map', '--group', '11', '--memory', '64G', '--fragments', '6000'], 'map-batch', 'SIGINT');
  t.is(stdout, '');
  const ls = parseJson<{ groups: { id: number; devices: { address: string; driver: string | null }[] }[] }>(await vfiokit([...host, '--json', 'ls']));
  t.deepEqual(ls.groups.find((g) => g.id === 11)!.devices.map((d) => [d.address, d.driver]), [['0000:04:00.0', 'vfio-pci']]);
});

test('map interrupted by SIGINT says how far it got and that it unmapped all of it', async (t) => {
  const tmp = scratch(t, 'vfiokit-interrupt-test-');
  const host = ['--mock', 'workstation', '--mock-dir', scratch(t, 'vfiokit-interrupt-host-')];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = startVfiokit([...host, 'map', '--group', '11', '--memory', '64G', '--fragments', '6000'], { env: { TMPDIR: tmp, VFIOKIT_TEST_AT: 'map-batch' } });
  await run.waitForStderr('vfiokit: at map-batch\n');
  process.kill(run.pid, 'SIGINT');
  const ended = await run.ended;
  t.is(ended.stderr, 'vfiokit: at map-batch\nmap stopped after 4096 of 6000 regions; unmapped them again, 0 left in the container\nvfiokit: interrupted by SIGINT\n');
});

test('map of more fragments than the memory has 2 MiB units is refused at once with exit 4, naming the limit', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'map', '--group', '11', '--memory', '64G', '--fragments', '40000']);
  t.is(run.code, 4);
  t.is(run.stderr, 'vfiokit: 65536 MiB holds at most 32768 fragments of 2 MiB, not 40000: ask for at most 32768 fragments or more memory\n');
});

test('map of more regions than the container may hold is refused before any is mapped, naming dma_entry_limit', async (t) => {
  const host = ['--mock', 'workstation', '--mock-dir', scratch(t, 'vfiokit-interrupt-host-')];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = await vfiokit([...host, 'map', '--group', '11', '--memory', '256G', '--fragments', '65536']);
  t.is(run.code, 5);
  t.is(run.stderr, "vfiokit: 65536 RAM regions need 65536 mappings, over the container's dma_entry_limit of 65535 (the kernel would answer ENOSPC)\nhint: use at most 65535 regions, or raise vfio_iommu_type1's dma_entry_limit module parameter\n");
});
