import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { EXAMPLES, parseJson, vfiokit } from '../testing/run-cli';

async function boundWorkstation(t: { teardown(fn: () => void): void; is(a: unknown, b: unknown): void }): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-map-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  return host;
}

interface MapJson {
  backend: string;
  groups: number[];
  regions: number;
  bytes: string;
  calls: number;
  ioctls: number;
  entries: number;
  unmapCalls: number;
  unmapIoctls: number;
}

test('map of a guest spec puts both q35 RAM regions in one batched call on the mock', async (t) => {
  const host = await boundWorkstation(t);
  const run = await vfiokit([...host, '--json', 'map', join(EXAMPLES, 'usb-controller.yaml')]);
  t.is(run.code, 0, run.stderr);
  const r = parseJson<MapJson>(run);
  t.like(r, { backend: 'mock', groups: [11], regions: 2, bytes: '0x100000000', calls: 1, ioctls: 2, entries: 2, unmapCalls: 1, unmapIoctls: 1 });
});

test('map of a fragmented layout issues one ioctl per region in a few batched calls', async (t) => {
  const host = await boundWorkstation(t);
  const run = await vfiokit([...host, '--json', 'map', '--group', '11', '--memory', '32G', '--fragments', '10000']);
  t.is(run.code, 0, run.stderr);
  const r = parseJson<MapJson>(run);
  t.like(r, { regions: 10000, ioctls: 10000, entries: 10000, calls: 3 });
});

test('map prints the calls issued and the time in text mode', async (t) => {
  const host = await boundWorkstation(t);
  const run = await vfiokit([...host, 'map', '--group', '11', '--memory', '8G']);
  t.is(run.code, 0);
  const lines = run.stdout.split('\n');
  t.is(lines[2], 'mapped 2 RAM regions (8 GiB) at IOVA = GPA');
  t.is(lines[3], '  1 batched call, 2 VFIO_IOMMU_MAP_DMA ioctls, 2 live entries');
  t.regex(lines[4]!, /^ {2}planned in \d+\.\d\d ms, issued in \d+\.\d\d ms$/);
});

test('map of a group still on its host driver is refused with the bind command', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'map', '--group', '11']);
  t.is(run.code, 5);
  t.is(run.stderr, "vfiokit: group 11 is not viable: 0000:04:00.0 is bound to xhci_hcd; run 'vfiokit bind 0000:04:00.0' to move the whole group to vfio-pci\nhint: each --mock run starts from a fresh host; keep one with --mock-dir and bind there first: vfiokit --mock workstation --mock-dir DIR bind 11, then run this map with --mock-dir DIR too\n");
});

test('map of RAM beyond the host IOMMU\'s IOVA ranges is refused before anything is mapped', async (t) => {
  const host = await boundWorkstation(t);
  const run = await vfiokit([...host, 'map', '--group', '11', '--memory', '1T']);
  t.is(run.code, 5);
  t.regex(run.stderr, /^vfiokit: cannot map guest RAM at IOVA = GPA: RAM region ram-above-4g .* outside the host IOMMU's IOVA ranges/);
});

test('map without groups or a spec is invalid input', async (t) => {
  const run = await vfiokit(['--mock', 'workstation', 'map']);
  t.is(run.code, 4);
  t.is(run.stderr, 'vfiokit: map needs the groups to put in the container\nhint: name them with --group N (see vfiokit ls), or give a guest spec\n');
});

test('map of a layout past the host IOVA limit is refused in one line, every region in --json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '11'])).code, 0);
  const text = await vfiokit([...host, 'map', '--group', '11', '--memory', '1T', '--fragments', '32768']);
  t.is(text.code, 5);
  const lines = text.stderr.trimEnd().split('\n');
  t.regex(lines[0]!, /^vfiokit: cannot map guest RAM at IOVA = GPA: RAM region frag\d+ .* \(and \d+ more regions\); move the RAM/);
  t.regex(lines[6]!, /^ {2}\.\.\. and \d+ more \(--json lists them all\)$/);
  t.true(text.stderr.length < 4000, `stderr is ${text.stderr.length} characters`);
  const json = await vfiokit([...host, '--json', 'map', '--group', '11', '--memory', '1T', '--fragments', '32768']);
  const body = JSON.parse(json.stderr) as { error: { code: string; details: string[] } };
  t.is(body.error.code, 'DMA_IOVA_COLLISION');
  t.true(body.error.details.length > 1000);
});
