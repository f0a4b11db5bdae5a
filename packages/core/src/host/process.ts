// Whether a process recorded in vfiokit's state (a binding's owner, a
// running guest's `vfiokit run`, a DRA plugin) still exists.

/**
 * True while `pid` names a live process. Signal 0 checks existence without
 * sending anything; EPERM means the process exists but belongs to another
 * user, which is still "alive" for a record that must not be taken over.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
