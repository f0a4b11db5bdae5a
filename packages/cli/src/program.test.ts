import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { EXIT_CODE_DESCRIPTIONS } from './exit-codes';
import { PACKAGE_DIR, vfiokit } from './testing/run-cli';

test('--help lists every exit code with its meaning', async (t) => {
  const run = await vfiokit(['--help']);
  t.is(run.code, 0);
  t.regex(run.stdout, /Exit codes:\n {3}0 {2}success\n/);
  t.regex(run.stdout, / 5 {2}refused \(not viable, safety rule, unsatisfiable plan, failed check\)/);
});

test('an unknown command exits 2 with the vfiokit: prefix and the help to read', async (t) => {
  const run = await vfiokit(['frobnicate']);
  t.is(run.code, 2);
  t.is(run.stdout, '');
  t.is(run.stderr, "vfiokit: unknown command 'frobnicate'\nhint: see 'vfiokit --help'\n");
});

test('a misspelt command is a usage error that suggests the right one', async (t) => {
  const run = await vfiokit(['sho', '11']);
  t.is(run.code, 2);
  t.is(run.stderr, "vfiokit: unknown command 'sho' (Did you mean show?)\nhint: see 'vfiokit --help'\n");
});

test("a subcommand's usage error points at that subcommand's help", async (t) => {
  const run = await vfiokit(['trace', 'replay']);
  t.is(run.code, 2);
  t.is(run.stderr, "vfiokit: missing required argument 'file'\nhint: see 'vfiokit trace replay --help'\n");
});

test('an unknown option in --json mode prints one JSON error on stderr and nothing on stdout', async (t) => {
  const run = await vfiokit(['--json', '--frobnicate']);
  t.is(run.code, 2);
  t.is(run.stdout, '');
  const body = JSON.parse(run.stderr) as { error: { code: string; exitCode: number; message: string } };
  t.is(body.error.code, 'USAGE_UNKNOWN_OPTION');
  t.is(body.error.exitCode, 2);
  t.is(body.error.message, "unknown option '--frobnicate'");
});

test('a sysfs root that does not exist is not found, not a host without an IOMMU', async (t) => {
  const run = await vfiokit(['--sysfs-root', '/nonexistent', 'ls']);
  t.is(run.code, 3);
  t.is(run.stdout, '');
  t.is(run.stderr, "vfiokit: sysfs root /nonexistent does not exist\nhint: give --sysfs-root the folder sysfs is mounted on (/sys), or a copy of one\n");
});

test('a folder that is not a sysfs tree is refused as one', async (t) => {
  const run = await vfiokit(['--sysfs-root', PACKAGE_DIR, 'ls']);
  t.is(run.code, 3);
  t.is(run.stderr.split('\n')[0], `vfiokit: ${PACKAGE_DIR} is not a sysfs tree: it has no bus/pci/devices`);
});

test('--version prints the package version', async (t) => {
  const run = await vfiokit(['--version']);
  t.is(run.code, 0);
  t.is(run.stdout, '0.1.0\n');
});

const COMMANDS = ['ls', 'show', 'check', 'bind', 'unbind', 'persist', 'unpersist', 'plan', 'run', 'upgrade', 'map', 'trace', 'trace replay', 'attach', 'detach', 'lab', 'demo', 'completion'];

for (const name of COMMANDS) {
  test(`${name} --help shows its usage and an example, and exits 0`, async (t) => {
    const run = await vfiokit([...name.split(' '), '--help']);
    t.is(run.code, 0);
    t.true(run.stdout.startsWith(`Usage: vfiokit ${name} `));
    // Examples that run on a simulated host, or (for commands that need QEMU or the lab) ones for a real host.
    t.regex(run.stdout, /\n(Examples?|On a real host):\n {2}\$ (vfiokit|pnpm) /);
  });
}

test('--help lists every command', async (t) => {
  const run = await vfiokit(['--help']);
  const listed = [...run.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
  t.deepEqual(listed, ['ls', 'show', 'check', 'bind', 'unbind', 'persist', 'unpersist', 'plan', 'run', 'upgrade', 'map', 'trace', 'attach', 'detach', 'lab', 'demo', 'completion', 'dra', 'help']);
});

test('the README documents the same exit codes as --help', (t) => {
  const readme = readFileSync(join(PACKAGE_DIR, 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| (\d) \| ([^|]+) \|$/gm)].map((m) => [Number(m[1]), m[2]!.trim()]);
  t.deepEqual(rows, EXIT_CODE_DESCRIPTIONS.map(([code, text]) => [code, text]));
});
