// What the command layer needs from a QMP session. It knows nothing of
// sockets: a QmpSession implements it, and so can anything else.
import type { KnownQmpEventName, QmpEvent, QmpEventOf } from './events';

export interface ExecuteOptions {
  /** Milliseconds to wait for the reply; the session's default otherwise. */
  readonly timeoutMs?: number;
  /** Send as `exec-oob` (needs the `oob` capability and a command that allows it). */
  readonly oob?: boolean;
  /**
   * Descriptors to send with the command (SCM_RIGHTS), for getfd and add-fd.
   * Only over a UNIX socket; the caller keeps its own copies open or closes them.
   */
  readonly fds?: readonly number[];
}

/** A pending wait for one event; `cancel` stops waiting (the promise then never settles). */
export interface EventWait<E> {
  readonly promise: Promise<E>;
  cancel(): void;
}

export interface QmpExecutor {
  /** Runs one command; resolves with its `return` value, rejects with a QemuBridgeError. */
  execute(command: string, args?: Record<string, unknown>, options?: ExecuteOptions): Promise<unknown>;
  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (event: QmpEvent) => void): () => void;
  /**
   * Starts waiting now for the first `name` event that `match` accepts. Start
   * the wait before sending the command that causes the event, so an event
   * that arrives before the command's reply is not missed.
   */
  waitForEvent<N extends KnownQmpEventName>(
    name: N,
    match: (event: QmpEventOf<N>) => boolean,
    timeoutMs: number,
  ): EventWait<QmpEventOf<N>>;
}
