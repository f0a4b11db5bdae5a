// Every example a newcomer copies: each `$ ...` line under "Example(s):" in
// every --help, and the command in the header of every example spec, run as
// printed (a shell line, `&&` and `<` included) from the root of a clone, in
// a folder of its own so each starts from a fresh simulated host, and exit 0.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { BIN, EXAMPLES, PACKAGE_DIR, vfiokit } from './testing/run-cli';
import { REAL_HOST_EXAMPLES } from './program';

const REPO = join(PACKAGE_DIR, '..', '..');
const COMMANDS = ['', 'ls', 'show', 'check', 'bind', 'unbind', 'persist', 'unpersist', 'plan', 'run', 'map', 'trace', 'trace replay', 'attach', 'detach', 'lab', 'demo', 'completion'];
/** Commands whose every example needs a real host (its devices, a running QEMU, the lab's downloads): printed under REAL_HOST_EXAMPLES only. */
const REAL_HOST_ONLY = ['run', 'attach', 'detach', 'lab'];

/** The `$ ` lines of the runnable Example(s) block of a help text. */
function runnableExamples(help: string): string[] {
  const block = /\nExamples?:\n((?: {2}\$ .*\n)+)/.exec(help);
  return block ? block[1]!.split('\n').filter(Boolean).map((l) => l.replace(/^ {2}\$ /, '')) : [];
}

function headerCommands(): { file: string; command: string }[] {
  return readdirSync(EXAMPLES)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      readFileSync(join(EXAMPLES, file), 'utf8')
        .split('\n')
        .filter((l) => /^# +vfiokit /.test(l))
        .map((l) => ({ file, command: l.replace(/^# +/, '') })),
    );
}

/** Run a shell line the way a user at the root of a clone does, `vfiokit` being the built binary. */
function runAsPrinted(line: string): Promise<{ code: number | null; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-example-'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'vfiokit'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  chmodSync(join(dir, 'bin', 'vfiokit'), 0o755);
  // The clone's files, seen from a folder whose other contents (ws/) go when the test ends.
  symlinkSync(join(REPO, 'packages'), join(dir, 'packages'));
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', line], { cwd: dir, env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, out });
    });
  });
}

for (const name of COMMANDS) {
  const label = name === '' ? 'vfiokit --help' : `vfiokit ${name} --help`;
  test(`every example in ${label} runs as printed on a fresh simulated host and exits 0`, async (t) => {
    const help = (await vfiokit([...name.split(' ').filter(Boolean), '--help'])).stdout;
    const examples = runnableExamples(help);
    if (REAL_HOST_ONLY.includes(name)) {
      t.deepEqual(examples, [], `${label} prints only ${REAL_HOST_EXAMPLES} examples`);
      t.true(help.includes(`\n${REAL_HOST_EXAMPLES}\n`));
      return;
    }
    t.true(examples.length > 0, `${label} has runnable examples`);
    for (const e of examples) {
      const run = await runAsPrinted(e);
      t.is(run.code, 0, `$ ${e}\n${run.out.slice(0, 3000)}`);
    }
  });
}

for (const { file, command } of headerCommands()) {
  test(`the header command of ${file} runs as printed and exits 0`, async (t) => {
    const run = await runAsPrinted(command);
    t.is(run.code, 0, `$ ${command}\n${run.out.slice(0, 3000)}`);
  });
}

test('every example spec has a header command', (t) => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));
  t.deepEqual(new Set(headerCommands().map((h) => h.file)), new Set(files));
});
