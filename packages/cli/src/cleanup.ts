// Things to undo if the process ends before the code that made them gets to
// its `finally`: a second Ctrl-C, a run that does not unwind in time, an
// uncaught error. main.ts runs them on 'exit', which every one of those
// passes through, so they must be synchronous (kill a child, remove a folder).

const pending = new Set<() => void>();

/** Run `undo` if the process exits before the returned function is called (it then forgets it). */
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

/** Resolve on the next turn of the event loop, so signal handlers (Ctrl-C) get to run during long work. */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
