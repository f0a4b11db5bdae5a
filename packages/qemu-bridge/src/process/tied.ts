// A child process tied to this one: it gets SIGKILL the moment this process
// dies, however it dies (an exception, a signal, SIGKILL, the OOM killer).
//
// The kernel's parent-death signal does it (prctl(PR_SET_PDEATHSIG),
// kernel/exit.c forget_original_parent -> reparent_leader sends it to each
// child when the parent exits). QEMU 7.2 has no option to ask for it (later
// QEMUs have `-run-with exit-with-parent=on`), so util-linux's
// `setpriv --pdeathsig KILL` sets it and execs the program: the setting
// survives execve (only a set-user-ID exec or a credential change clears it,
// prctl(2)), and the pid stays the same.
//
// prctl(2) names the race: if this process dies after fork() but before the
// prctl, the child has already been re-parented and no signal ever comes. A
// one-line sh between setpriv and the program closes it: after the prctl it
// compares its parent with our pid and exits at once if they differ.
import { spawn, type ChildProcess, type StdioNull, type StdioPipe } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Writable } from 'node:stream';
import { QemuBridgeError } from '../errors';

/** What spawnTied could not do before the program ran. */
export class TiedSpawnError extends QemuBridgeError {
  constructor(message: string, readonly errno: string) {
    super('PROCESS_SPAWN_FAILED', message);
  }
}

export type TiedStdio = StdioNull | StdioPipe;

export interface TiedSpawnOptions {
  /** stdin, stdout, stderr. Default: ['ignore', 'ignore', 'pipe']. */
  readonly stdio?: readonly [TiedStdio, TiedStdio, TiedStdio];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /**
   * Hand the child this stream (a RunDir's `keepAlive`) as fd 3, so whoever
   * waits on it for EOF (the RunDir's reaper) also waits for the child.
   */
  readonly keepAlive?: Writable;
  /**
   * Start the child in its own session (setsid), so a Ctrl-C or hang-up on
   * the terminal reaches vfiokit only and vfiokit decides how the child ends.
   * Default true.
   */
  readonly ownSession?: boolean;
  /**
   * Start the child with this RLIMIT_MEMLOCK (bytes; a hard of undefined is
   * unlimited). util-linux's `prlimit --memlock=SOFT:HARD` sets it and execs
   * the program, like setpriv before it, so the pid stays the program's.
   */
  readonly memlock?: { readonly soft: bigint; readonly hard: bigint | undefined };
}

// $1 is the pid the child must still have as its parent; the rest is the program.
const GUARD = '[ "$PPID" = "$1" ] || exit 137; shift; exec "$@"';

/** The path `program` runs from (PATH lookup when it has no slash), or undefined. */
export function resolveProgram(program: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = program.includes('/') ? [program] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Spawn `argv` (argv[0] the program, no shell around it) tied to this
 * process by the parent-death signal. Throws TiedSpawnError when the program
 * or setpriv cannot be found, before anything runs; the returned child's pid
 * is the program's own (setpriv and sh exec into it).
 *
 * Spawn from the main thread: the kernel sends the parent-death signal when
 * the *thread* that forked the child exits (prctl(2)), so a child spawned
 * from a worker thread would be killed when that worker ends.
 */
export function spawnTied(argv: readonly string[], options: TiedSpawnOptions = {}): ChildProcess {
  if (argv.length === 0) throw new TiedSpawnError('cannot spawn a process: the argv is empty', 'EINVAL');
  const program = resolveProgram(argv[0]!, options.env?.PATH ?? process.env.PATH);
  if (program === undefined) {
    throw new TiedSpawnError(`cannot start ${argv[0]}: not found or not executable${argv[0]!.includes('/') ? '' : ' on PATH'}`, 'ENOENT');
  }
  const setpriv = resolveProgram('setpriv');
  if (setpriv === undefined) {
    throw new TiedSpawnError(
      `cannot start ${argv[0]} tied to vfiokit: setpriv (util-linux) is not on PATH; it sets the parent-death signal that ends ${argv[0]} with vfiokit`,
      'ENOENT',
    );
  }
  let limits: string[] = [];
  if (options.memlock !== undefined) {
    const prlimit = resolveProgram('prlimit');
    if (prlimit === undefined) {
      throw new TiedSpawnError(`cannot start ${argv[0]} with RLIMIT_MEMLOCK ${options.memlock.soft}: prlimit (util-linux) is not on PATH`, 'ENOENT');
    }
    limits = [prlimit, `--memlock=${options.memlock.soft}:${options.memlock.hard ?? 'unlimited'}`];
  }
  const stdio = [...(options.stdio ?? ['ignore', 'ignore', 'pipe']), ...(options.keepAlive ? [options.keepAlive] : [])];
  return spawn(setpriv, ['--pdeathsig', 'KILL', ...limits, '/bin/sh', '-c', GUARD, 'vfiokit-tie', String(process.pid), program, ...argv.slice(1)], {
    stdio: stdio as never,
    env: options.env,
    cwd: options.cwd,
    detached: options.ownSession ?? true,
    argv0: argv[0],
  });
}
