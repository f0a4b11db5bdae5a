// Starts QEMU from an argv (see buildCommandLine) and connects to its QMP
// monitor. The process is the caller's: stop() ends it; nothing restarts it.
// It is tied to this process (spawnTied): it dies when vfiokit dies.
import { QemuLaunchError, QmpConnectError } from '../errors';
import type { QmpSession } from '../qmp/protocol';
import { connectQmp, describeAddress, type QmpAddress } from '../qmp/transport';
import type { RunDir } from './run-dir';
import { spawnTied, TiedSpawnError } from './tied';

export interface LaunchOptions {
  /** How long QEMU may take to open its monitor. Default 30 s (TCG in a nested guest is slow). */
  readonly startTimeoutMs?: number;
  /** Default timeout of each QMP command of the session. */
  readonly commandTimeoutMs?: number;
  /**
   * The folder holding QEMU's socket and files: its reaper then waits for
   * QEMU to be gone too before it removes the folder (see createRunDir).
   */
  readonly runDir?: RunDir;
  /** Give up the launch when aborted: QEMU is killed and the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Start QEMU with this RLIMIT_MEMLOCK (see spawnTied): VFIO charges guest RAM to it. */
  readonly memlock?: { readonly soft: bigint; readonly hard: bigint | undefined };
  /**
   * Runs after QEMU is spawned and before its monitor is dialled: for a QEMU
   * whose monitor opens only once something else has happened (cpr-transfer's
   * new QEMU opens it after the old one has sent its cpr state). `gone` says
   * why QEMU ended, once it has. A rejection kills QEMU and fails the launch.
   */
  readonly beforeConnect?: (gone: () => string | undefined) => Promise<void>;
}

export interface RunningQemu {
  readonly pid: number;
  readonly qmp: QmpSession;
  /** Resolves when the process has exited, with its exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;
  /** The signal that ended QEMU (`SIGKILL`), once it has exited by one; null otherwise. */
  exitSignal(): NodeJS.Signals | null;
  /** What QEMU has written on stderr so far. */
  stderr(): string;
  /** Closes the session, sends SIGTERM, and SIGKILL after `graceMs` (default 5 s). */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now, without waiting: for a synchronous cleanup on the way out. */
  kill(): void;
}

/**
 * Spawns `argv` (argv[0] is the binary; no shell) and connects to the QMP
 * monitor the command line opens at `qmp` (`-qmp ...,server=on,wait=off`).
 */
export async function launchQemu(argv: readonly string[], qmp: QmpAddress, options: LaunchOptions = {}): Promise<RunningQemu> {
  if (argv.length === 0) throw new QemuLaunchError('cannot launch QEMU: the argv is empty', '');
  let child;
  try {
    child = spawnTied(argv, { stdio: ['ignore', 'ignore', 'pipe'], keepAlive: options.runDir?.keepAlive, ...(options.memlock ? { memlock: options.memlock } : {}) });
  } catch (err) {
    if (err instanceof TiedSpawnError) throw new QemuLaunchError(err.message, '', { cause: err });
    throw err;
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    stderr += text;
  });
  let exitCode: number | null | undefined;
  let exitSignal: NodeJS.Signals | null = null;
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code, signal) => {
      exitCode = code;
      exitSignal = signal;
      resolve(code);
    }),
  );
  const spawnFailed = new Promise<Error>((resolve) => child.once('error', resolve));
  const kill = async (graceMs: number): Promise<void> => {
    if (exitCode !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  if (options.beforeConnect) {
    const gone = () =>
      exitCode !== undefined ? `${argv[0]} exited with ${exitCode ?? exitSignal} before its monitor opened: ${stderr.trim().split('\n').pop() ?? ''}` : undefined;
    try {
      await options.beforeConnect(gone);
    } catch (err) {
      await kill(1_000);
      throw err;
    }
  }
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  const aborted = (): Promise<never> => {
    child.kill('SIGKILL');
    return exited.then(() => Promise.reject(options.signal!.reason));
  };
  for (;;) {
    if (options.signal?.aborted) return aborted();
    const failed = await Promise.race([
      spawnFailed.then((err) => `could not start ${argv[0]}: ${err.message}`),
      exited.then((code) => `${argv[0]} exited with ${code} before its QMP monitor answered: ${stderr.trim()}`),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 0)),
    ]);
    if (failed !== null) throw new QemuLaunchError(failed, stderr);
    try {
      const session = await connectQmp(qmp, { connectTimeoutMs: 2_000, commandTimeoutMs: options.commandTimeoutMs });
      return {
        pid: child.pid!,
        qmp: session,
        exited,
        exitSignal: () => exitSignal,
        stderr: () => stderr,
        async stop(graceMs = 5_000) {
          await session.close();
          await kill(graceMs);
        },
        kill() {
          if (exitCode === undefined) child.kill('SIGKILL');
        },
      };
    } catch (err) {
      if (!(err instanceof QmpConnectError)) {
        // QEMU opens its monitor before it creates devices, so a device it
        // cannot create makes it exit under a session being negotiated:
        // report why it exited, not that the socket closed.
        const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 2_000))]);
        if (code !== 'running') {
          throw new QemuLaunchError(`${argv[0]} exited with ${code} while starting: ${stderr.trim()}`, stderr, { cause: err });
        }
        await kill(1_000);
        throw err;
      }
      // The socket appears a moment after QEMU starts: retry until the deadline.
      if (Date.now() > deadline) {
        await kill(1_000);
        throw new QemuLaunchError(
          `${argv[0]} did not open its QMP monitor at ${describeAddress(qmp)} in time: ${err.message}; stderr: ${stderr.trim()}`,
          stderr,
          { cause: err },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
