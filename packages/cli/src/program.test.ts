import test from 'ava';
import { vfiokit } from './testing/run-cli';

test('--help lists every exit code with its meaning', async (t) => {
  const run = await vfiokit(['--help']);
  t.is(run.code, 0);
  t.regex(run.stdout, /Exit codes:\n {3}0 {2}success\n/);
  t.regex(run.stdout, / 5 {2}refused \(not viable, safety rule, unsatisfiable plan, failed check\)/);
});

test('an unknown command exits 2 with commander\'s message on stderr', async (t) => {
  const run = await vfiokit(['frobnicate']);
  t.is(run.code, 2);
  t.is(run.stdout, '');
  t.regex(run.stderr, /unknown command 'frobnicate'|too many arguments/);
});

test('an unknown option in --json mode prints one JSON error on stderr and nothing on stdout', async (t) => {
  const run = await vfiokit(['--json', '--frobnicate']);
  t.is(run.code, 2);
  t.is(run.stdout, '');
  const body = JSON.parse(run.stderr) as { error: { code: string; exitCode: number; message: string } };
  t.is(body.error.code, 'commander.unknownOption');
  t.is(body.error.exitCode, 2);
  t.is(body.error.message, "unknown option '--frobnicate'");
});

test('--version prints the package version', async (t) => {
  const run = await vfiokit(['--version']);
  t.is(run.code, 0);
  t.is(run.stdout, '0.1.0\n');
});
