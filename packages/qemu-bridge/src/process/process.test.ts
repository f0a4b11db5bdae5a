import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { eventually, executableOf, gone, processAlive } from '@vfiokit/testkit';
import { createRunDir, spawnTied, TiedSpawnError } from './index';

const BUILT = join(__dirname, '..', '..', 'dist', 'process', 'index.js');

/**
 * A Node process that makes a run dir, spawns `sleep` tied to itself with the
 * dir's keepAlive, prints {dir, child} and waits to be killed.
 */
async function owner(): Promise<{ pid: number; dir: string; child: number }> {
  const script = `
    const { createRunDir, spawnTied } = require(${JSON.stringify(BUILT)});
    const dir = createRunDir('vfiokit-process-test-');
    const child = spawnTied(['sleep', '1000'], { keepAlive: dir.keepAlive, stdio: ['ignore', 'ignore', 'ignore'] });
    console.log(JSON.stringify({ dir: dir.path, child: child.pid }));
    setInterval(() => {}, 1000);
  `;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`owner exited with ${code} before reporting`)));
  });
  return { pid: proc.pid!, ...(JSON.parse(line) as { dir: string; child: number }) };
}

test('a tied child is killed when its parent is killed with SIGKILL, and the run dir is removed after both', async (t) => {
  const o = await owner();
  t.true(processAlive(o.child));
  t.true(existsSync(o.dir));
  process.kill(o.pid, 'SIGKILL');
  await eventually(() => !processAlive(o.child), `tied child ${o.child} ended`);
  await eventually(() => gone(o.dir), `${o.dir} removed by its reaper`);
  t.pass();
});

test("a tied child's pid is the program's own once setpriv and the guard have exec'd into it", async (t) => {
  const child = spawnTied(['sleep', '1000'], { stdio: ['ignore', 'ignore', 'ignore'] });
  t.teardown(() => child.kill('SIGKILL'));
  await eventually(() => executableOf(child.pid!)?.endsWith('/sleep') === true, `pid ${child.pid} runs sleep`);
  t.pass();
});

test('a tied child runs in its own session, out of reach of the terminal', async (t) => {
  const child = spawnTied(['sleep', '1000'], { stdio: ['ignore', 'ignore', 'ignore'] });
  t.teardown(() => child.kill('SIGKILL'));
  await eventually(() => executableOf(child.pid!)?.endsWith('/sleep') === true, `pid ${child.pid} runs sleep`);
  // setsid makes the child the leader of a new session and process group: its pgid is its pid.
  const { execFileSync } = await import('node:child_process');
  t.is(execFileSync('ps', ['-o', 'pgid=', '-p', String(child.pid)], { encoding: 'utf8' }).trim(), String(child.pid));
});

test('spawnTied of a program that is not on PATH throws before anything runs', (t) => {
  const err = t.throws(() => spawnTied(['vfiokit-no-such-program']), { instanceOf: TiedSpawnError });
  t.is(err.errno, 'ENOENT');
  t.is(err.code, 'PROCESS_SPAWN_FAILED');
  t.regex(err.message, /vfiokit-no-such-program: not found or not executable on PATH/);
});

test("a run dir's reaper waits until every holder of keepAlive is gone before removing the folder", async (t) => {
  const dir = createRunDir('vfiokit-process-test-');
  // A child that writes into the folder after our end of the pipe is closed:
  // the write succeeds only if the reaper is still waiting for it.
  const late = spawn('/bin/sh', ['-c', 'while [ ! -e "$1/go" ]; do sleep 0.05; done; echo late > "$1/late"', 'late-writer', dir.path], {
    stdio: ['ignore', 'ignore', 'inherit', dir.keepAlive],
  });
  const exited = new Promise<number | null>((resolve) => late.once('exit', resolve));
  dir.keepAlive.destroy(); // as our death would, without remove()
  t.true(processAlive(dir.reaperPid), 'the reaper still waits for the child');
  writeFileSync(join(dir.path, 'go'), '');
  t.is(await exited, 0, 'the child could still write into the folder');
  await eventually(() => gone(dir.path), `${dir.path} removed by its reaper`);
});

test('remove() deletes the run dir at once, lets the reaper go, and may be called again', async (t) => {
  const dir = createRunDir('vfiokit-process-test-');
  writeFileSync(join(dir.path, 'qmp.sock'), '');
  dir.remove();
  t.false(existsSync(dir.path));
  dir.remove();
  await eventually(() => !processAlive(dir.reaperPid), `reaper ${dir.reaperPid} exited`);
  t.pass();
});

test('a tied child started with a memlock limit has that RLIMIT_MEMLOCK, set by prlimit before it runs', async (t) => {
  // Within the current hard limit, which any process may do (setrlimit(2)).
  const hard = /^Max locked memory\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]!;
  const child = spawnTied(['sh', '-c', 'ulimit -l'], { stdio: ['ignore', 'pipe', 'ignore'], memlock: { soft: 4n << 20n, hard: hard === 'unlimited' ? undefined : BigInt(hard) } });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((resolve) => child.once('close', resolve));
  // ulimit -l counts KiB.
  t.is(out.trim(), '4096');
});
