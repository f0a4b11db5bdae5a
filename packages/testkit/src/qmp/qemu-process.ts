// Starts a real QEMU (qemu-system-x86_64 q35 unless told) for integration tests: stopped (-S), with
// no default devices, TCG, no display, and QMP on a UNIX socket in a private
// temporary folder. stop() ends the process and removes the folder.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { tiedToThisProcess } from '../processes/tie';

export interface TestQemuOptions {
  /** Extra arguments after the fixed ones, e.g. ['-device', 'pcie-root-port,id=rp1,chassis=1']. */
  readonly args?: readonly string[];
  /** Guest RAM, as QEMU's -m takes it. Default '128M'. */
  readonly memory?: string;
  /** The binary. Default 'qemu-system-x86_64' from PATH. */
  readonly binary?: string;
  /** The -machine value. Default 'q35'. */
  readonly machine?: string;
  /** Let the firmware run (no -S). Default false: the VM stays in prelaunch. */
  readonly running?: boolean;
  /** How long to wait for the QMP socket to appear. Default 15 s. */
  readonly startTimeoutMs?: number;
}

export interface TestQemu {
  readonly pid: number;
  readonly socketPath: string;
  readonly address: { readonly path: string };
  readonly argv: readonly string[];
  /** Exit code, or null while running / killed by signal. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after 5 s; removes the temporary folder. */
  stop(): Promise<void>;
}

/** True when the binary runs here; integration tests state it as a precondition. */
export function qemuAvailable(binary = 'qemu-system-x86_64'): boolean {
  const r = spawnSync(binary, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** A test registration as ava's `test` and `test.skip` take one. */
export type RegisterTest<T> = (title: string, impl: (t: T) => void | Promise<void>) => void;

/**
 * How to register a test that needs `binary` (a QEMU that scripts/install.sh
 * installs from `aptPackage`): as itself where the binary runs; as a skip on
 * a developer's machine without it; and in CI (CI set, as .ci/run sets it) as
 * a test that fails naming the package, since there a missing QEMU is a
 * broken install and a skip would hide the test from the closing count.
 */
export function testNeedingQemu<T extends { fail(message?: string): void } = ExecutionContext>(
  test: RegisterTest<T> & { skip: RegisterTest<T> },
  binary = 'qemu-system-x86_64',
  aptPackage = 'qemu-system-x86',
  env: NodeJS.ProcessEnv = process.env,
): RegisterTest<T> {
  if (qemuAvailable(binary)) return (title, impl) => test(title, impl);
  if (env.CI) {
    return (title) => test(title, (t) => t.fail(`${binary} does not run here, though scripts/install.sh installs it (apt-get install ${aptPackage})`));
  }
  return (title, impl) => test.skip(title, impl);
}

export async function startTestQemu(options: TestQemuOptions = {}): Promise<TestQemu> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-qemu-'));
  const socketPath = join(dir, 'qmp.sock');
  const binary = options.binary ?? 'qemu-system-x86_64';
  const argv = [
    ...(options.running ? [] : ['-S']),
    '-nodefaults',
    '-machine',
    options.machine ?? 'q35',
    '-accel',
    'tcg',
    '-display',
    'none',
    '-m',
    options.memory ?? '128M',
    '-qmp',
    `unix:${socketPath},server=on,wait=off`,
    ...(options.args ?? []),
  ];
  const child = spawn(...tiedToThisProcess(binary, argv), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  for (;;) {
    if (existsSync(socketPath)) break;
    const early = await Promise.race([
      exited.then((code) => `exited with ${code}: ${stderr.trim()}`),
      spawnError.then((err) => `could not start: ${err.message}`),
      delay(20).then(() => null),
    ]);
    if (early !== null) {
      cleanup();
      throw new Error(`${binary} ${early}`);
    }
    if (Date.now() > deadline) {
      await kill(child, exited);
      cleanup();
      throw new Error(`${binary} did not create ${socketPath} in time; stderr: ${stderr.trim()}`);
    }
  }
  return {
    pid: child.pid!,
    socketPath,
    address: { path: socketPath },
    argv: [binary, ...argv],
    exited,
    async stop() {
      await kill(child, exited);
      cleanup();
    },
  };
}

async function kill(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
