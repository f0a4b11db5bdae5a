import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { enableAfterBootTrace, formatTrace } from '@vfiokit/core';
import { PACKAGE_DIR, parseJson, vfiokit } from '../testing/run-cli';

/** The committed excerpt of the real e1000e recording (core's test fixture). */
const RECORDING = join(PACKAGE_DIR, '..', 'core', 'src', 'dma', 'fixtures', 'e1000e-strict-6.1-phase1.txt');

function file(t: { teardown(fn: () => void): void }, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-trace-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, name), text);
  return join(dir, name);
}

interface ReplayJson {
  ops: number;
  guestMapsUnmaps: number;
  groups: number[];
  calls: number;
  ioctls: number;
  peakEntries: number;
  finalEntries: Record<string, number>;
}

test('replay of a generated trace (IOMMU enabled after boot) replays every operation into the group\'s container', async (t) => {
  const trace = enableAfterBootTrace({ ops: 300, seed: 3 });
  const path = file(t, 'boot.trace', formatTrace(trace));
  const run = await vfiokit(['--json', 'trace', 'replay', path]);
  t.is(run.code, 0, run.stderr);
  const r = parseJson<ReplayJson>(run);
  t.is(r.ops, trace.ops.length);
  t.deepEqual(r.groups, [1]);
  t.is(r.guestMapsUnmaps, trace.ops.filter((o) => o.op === 'map' || o.op === 'unmap').length);
  t.true(r.calls > 0 && r.finalEntries['1']! > 0);
});

test('replay of the real e1000e recording imports the Linux tracepoints for the named device', async (t) => {
  const run = await vfiokit(['trace', 'replay', RECORDING, '--device', '0000:00:02.0']);
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.split('\n');
  t.regex(lines[0]!, /^replayed .*e1000e-strict-6\.1-phase1\.txt: \d+ guest IOMMU operations \(\d+ maps and unmaps\), 2 GiB guest RAM$/);
  t.is(lines[3], '  never more host calls than guest operations');
});

test('a trace with a malformed line exits 4 naming the line', async (t) => {
  const path = file(t, 'bad.trace', 'vfiokit-dma-trace 1\nram r 0x0 0x10000000\nattach 1 1\nenable\nmap 1 0x1000 0x2000 0x1000 rwx\n');
  const run = await vfiokit(['trace', 'replay', path]);
  t.is(run.code, 4);
  t.is(run.stderr, "vfiokit: trace line 5: permission 'rwx' must be r, w or rw\n");
});

test('a file that is no trace exits 4 saying which formats are read', async (t) => {
  const path = file(t, 'notes.txt', 'hello\n');
  const run = await vfiokit(['trace', 'replay', path]);
  t.is(run.code, 4);
  t.regex(run.stderr, /^vfiokit: not a trace vfiokit reads: expected 'vfiokit-dma-trace 1' on the first line/);
});

test('a trace file that does not exist exits 3', async (t) => {
  const run = await vfiokit(['trace', 'replay', '/nonexistent.trace']);
  t.is(run.code, 3);
  t.regex(run.stderr, /^vfiokit: trace \/nonexistent\.trace does not exist\n/);
});

test('replay of a recording that needs --device suggests the device its header names, not the last one listed', async (t) => {
  const run = await vfiokit(['trace', 'replay', RECORDING]);
  t.is(run.code, 4);
  t.regex(run.stderr, /name the device doing DMA: --device 0000:00:02\.0 \(the device the recording's header names\)\n/);
});

test('replay of a recording whose header names no device lists every candidate', async (t) => {
  const text = readFileSync(RECORDING, 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const run = await vfiokit(['trace', 'replay', file(t, 'bare.txt', text)]);
  t.is(run.code, 4);
  t.regex(run.stderr, /name the device doing DMA: --device BDF, one of 0000:00:[0-9a-f]{2}\.\d(, 0000:00:[0-9a-f]{2}\.\d)+\n/);
});

test('replay reads an .xz recording and - for standard input, with the same result as the plain file', async (t) => {
  const plain = parseJson<ReplayJson>(await vfiokit(['--json', 'trace', 'replay', '--device', '0000:00:02.0', RECORDING]));
  const xz = file(t, 'rec.txt.xz', '');
  writeFileSync(xz, execFileSync('xz', ['-c', RECORDING]));
  const fromXz = parseJson<ReplayJson>(await vfiokit(['--json', 'trace', 'replay', '--device', '0000:00:02.0', xz]));
  const fromStdin = parseJson<ReplayJson>(await vfiokit(['--json', 'trace', 'replay', '--device', '0000:00:02.0', '-'], { stdin: RECORDING }));
  for (const r of [fromXz, fromStdin]) t.deepEqual([r.ops, r.calls, r.ioctls, r.peakEntries], [plain.ops, plain.calls, plain.ioctls, plain.peakEntries]);
  t.true(plain.ops > 0);
});

test('replay of a file named .xz that is not xz data exits 4', async (t) => {
  const run = await vfiokit(['trace', 'replay', file(t, 'fake.xz', 'not xz\n')]);
  t.is(run.code, 4);
  t.regex(run.stderr, /^vfiokit: trace .*fake\.xz is not xz data: /);
});
