// Things to undo if the process is interrupted (Ctrl-C, SIGTERM) before the
// code that made them gets to its `finally`: temporary folders above all, so
// an interrupted `--mock` run or demo still leaves nothing behind.

const pending = new Set<() => void>();

/** Run `undo` on interruption until the returned function is called (it then forgets it). */
export function onInterrupt(undo: () => void): () => void {
  pending.add(undo);
  return () => pending.delete(undo);
}

/** Run every pending undo once, newest first; errors are ignored (we are exiting). */
export function runInterruptCleanups(): void {
  for (const undo of [...pending].reverse()) {
    try {
      undo();
    } catch {
      // Best effort: the process is going away.
    }
  }
  pending.clear();
}
