// A private temporary folder (QEMU's QMP socket and pidfile, a simulated
// host) that is removed when vfiokit is done with it, however vfiokit ends.
//
// vfiokit removes it itself when it can (remove(), a finally, a signal
// handler). For the case where it cannot (SIGKILL, the OOM killer, a crash
// in native code) every folder has a reaper: a tiny `sh` in its own session
// that holds the read end of a pipe and runs `rm -rf` on EOF. The kernel
// closes the write end when vfiokit dies, and children started with this
// folder's `keepAlive` hold a copy of it, so EOF means vfiokit *and* those
// children are gone: nothing can still be writing into the folder when it is
// removed. (The other way, used by libvirt for its state directories, is a
// sweep of stale folders whose owner pid is dead at the next start; that
// leaves the folder until someone runs vfiokit again, so vfiokit reaps.)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

export interface RunDir {
  /** The folder (absolute). */
  readonly path: string;
  /**
   * The pipe the reaper waits on: pass it to spawnTied({ keepAlive }) so the
   * reaper also waits for that child before it removes the folder.
   */
  readonly keepAlive: Writable;
  /** The reaper's pid, for tests. */
  readonly reaperPid: number;
  /** Remove the folder now and let the reaper go. Idempotent; never throws for a folder already gone. */
  remove(): void;
}

// The reaper: wait for EOF on stdin, then remove the folder. `cat` returns
// only when every holder of the write end has closed it.
const REAPER = 'cat >/dev/null; exec rm -rf -- "$1"';

/**
 * Make a folder `<parent>/<prefix>XXXXXX` (default parent: os.tmpdir()) with
 * its reaper already waiting.
 */
export function createRunDir(prefix: string, options: { parent?: string } = {}): RunDir {
  // Absolute, so the reaper's `rm -rf` does not depend on anyone's cwd.
  const path = mkdtempSync(join(resolve(options.parent ?? tmpdir()), prefix));
  let reaper: ChildProcess;
  try {
    // Own session (detached): the terminal's Ctrl-C and hang-up do not reach it.
    reaper = spawn('/bin/sh', ['-c', REAPER, 'vfiokit-reaper', path], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  } catch (err) {
    rmSync(path, { recursive: true, force: true });
    throw err;
  }
  reaper.unref();
  const keepAlive = reaper.stdin!;
  // Neither the reaper nor its pipe keeps vfiokit's event loop alive.
  (keepAlive as Socket).unref();
  // A reaper that could not start leaves the folder to remove() alone; that
  // is reported there, not as an unhandled 'error'.
  reaper.on('error', () => {});
  keepAlive.on('error', () => {});
  let removed = false;
  return {
    path,
    keepAlive,
    reaperPid: reaper.pid ?? -1,
    remove() {
      if (removed) return;
      removed = true;
      rmSync(path, { recursive: true, force: true });
      keepAlive.destroy();
    },
  };
}
