// Named points in a run where tests of interruption stop it. With
// VFIOKIT_TEST_AT=<stage> a run that reaches <stage> says so on stderr
// (`vfiokit: at <stage>`) and waits there until it is interrupted, so a test
// can kill it at exactly that point; `<stage>:crash` throws an uncaught
// error there instead, as a bug in a callback would. Unset (always, outside
// tests) a checkpoint costs one comparison.

export type Stage =
  /** The command's host session is open (a simulated host's folder exists). */
  | 'host-opened'
  /** map: the first batch is in the container, the rest not yet. */
  | 'map-batch'
  /** demo: the USB controller's group is on vfio-pci. */
  | 'demo-bound'
  /** demo: QEMU runs and its monitor answered. */
  | 'demo-qemu-up'
  /** demo: a device was hot-plugged into QEMU. */
  | 'demo-qemu-plugged'
  /** run: the guest's groups are on vfio-pci and QEMU runs. */
  | 'run-qemu-up'
  /** attach: the QMP session is open, nothing plugged yet. */
  | 'attach-connected';

export async function checkpoint(stage: Stage, signal: AbortSignal): Promise<void> {
  const at = process.env.VFIOKIT_TEST_AT;
  if (at === undefined || (at !== stage && at !== `${stage}:crash`)) return;
  process.stderr.write(`vfiokit: at ${stage}\n`);
  if (at.endsWith(':crash')) {
    setImmediate(() => {
      throw new Error(`VFIOKIT_TEST_AT=${at}: a deliberate uncaught error`);
    });
  }
  await new Promise<void>((resolve) => {
    // Something for the event loop to wait on until the interruption comes.
    const hold = setInterval(() => {}, 60_000);
    const done = () => {
      clearInterval(hold);
      resolve();
    };
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
  signal.throwIfAborted();
}
