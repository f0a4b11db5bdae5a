// A buffered, filtered subscription to a session's events, read by async
// iteration: the shape of qemu.qmp's EventListener (python/qemu/qmp/events.py),
// where a listener can exist before the session it is registered with, so
// that no event between connect and the first read is lost.
import { QemuBridgeError, type QmpDisconnectedError } from '../errors';
import type { KnownQmpEventName, QmpEvent, QmpEventOf } from './events';

export interface EventListenerOptions<E extends QmpEvent = QmpEvent> {
  /** Event names to receive; all events when absent or empty. */
  readonly names?: readonly string[];
  /** Further filter: only events for which it returns true are buffered. */
  readonly filter?: (event: E) => boolean;
  /**
   * Events kept unread before the oldest is dropped. Default 10 000: a
   * reader that stops reading must not make the session grow without end.
   */
  readonly maxBuffered?: number;
}

/** `listener.next()` waited longer than its timeout. */
export class QmpEventTimeoutError extends QemuBridgeError {
  constructor(message: string) {
    super('QMP_TIMEOUT', message);
  }
}

/** What a session needs of a listener: QmpEventListener of any event type. */
export interface SessionListener {
  deliver(event: QmpEvent): void;
  finish(error: QmpDisconnectedError | null): void;
  detach: (() => void) | null;
}

type Waiter<E> = { resolve: (r: IteratorResult<E, undefined>) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };

export class QmpEventListener<E extends QmpEvent = QmpEvent> implements AsyncIterable<E>, SessionListener {
  private readonly names: ReadonlySet<string>;
  private readonly filter: ((event: E) => boolean) | undefined;
  private readonly maxBuffered: number;
  private readonly queue: E[] = [];
  private head = 0;
  private readonly waiters: Waiter<E>[] = [];
  private droppedCount = 0;
  private finished = false;
  private endedWithValue: QmpDisconnectedError | null = null;
  /** Set by the session that holds this listener; undoes the registration. */
  detach: (() => void) | null = null;

  constructor(options: EventListenerOptions<E> = {}) {
    this.names = new Set(options.names ?? []);
    this.filter = options.filter;
    this.maxBuffered = options.maxBuffered ?? 10_000;
  }

  /** Events waiting to be read. */
  get buffered(): number {
    return this.queue.length - this.head;
  }

  /** Events dropped because `maxBuffered` unread events were waiting. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Why the session ended, once it has (the listener then yields what it buffered, and ends). */
  get endedWith(): QmpDisconnectedError | null {
    return this.endedWithValue;
  }

  /** True when `event` passes the names and the filter. */
  accepts(event: QmpEvent): event is E {
    if (this.names.size > 0 && !this.names.has(event.name)) return false;
    return this.filter === undefined || this.filter(event as E);
  }

  /** The next event; `done` once the session ended (or close()) and the buffer is empty. */
  next(timeoutMs?: number): Promise<IteratorResult<E, undefined>> {
    if (this.head < this.queue.length) return Promise.resolve({ done: false, value: this.shift() });
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      const waiter: Waiter<E> = { resolve, reject };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new QmpEventTimeoutError(`no event${this.describe()} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.waiters.push(waiter);
    });
  }

  /** The next event, or QmpEventTimeoutError; rejects with the session's end once nothing is left. */
  async get(timeoutMs?: number): Promise<E> {
    const r = await this.next(timeoutMs);
    if (r.done) {
      throw this.endedWithValue ?? new QemuBridgeError('QMP_DISCONNECTED', `the event listener${this.describe()} was closed`);
    }
    return r.value;
  }

  /** Takes every buffered event at once. */
  drain(): E[] {
    const out = this.queue.slice(this.head);
    this.queue.length = 0;
    this.head = 0;
    return out;
  }

  /** Stops listening: the session forgets this listener, buffered events can still be read. */
  close(): void {
    this.detach?.();
    this.finish(null);
  }

  [Symbol.asyncIterator](): AsyncIterator<E, undefined> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  /** Called by the session for each event it received. */
  deliver(event: QmpEvent): void {
    if (this.finished || !this.accepts(event)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve({ done: false, value: event });
      return;
    }
    if (this.buffered >= this.maxBuffered) {
      this.shift();
      this.droppedCount++;
      if (this.droppedCount === 1) {
        process.emitWarning(
          `a QMP event listener${this.describe()} dropped its oldest event: ${this.maxBuffered} events were unread; ` +
            'read faster, filter by name, or raise maxBuffered',
        );
      }
    }
    this.queue.push(event);
  }

  /** Called by the session when it ends; the listener ends once its buffer is read. */
  finish(error: QmpDisconnectedError | null): void {
    if (this.finished) return;
    this.finished = true;
    this.endedWithValue = error;
    this.detach = null;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve({ done: true, value: undefined });
    }
  }

  private shift(): E {
    const event = this.queue[this.head]!;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return event;
  }

  private describe(): string {
    return this.names.size > 0 ? ` for ${[...this.names].join(', ')}` : '';
  }
}

/** A listener for one known event, typed by its name. */
export function eventListener<N extends KnownQmpEventName>(
  name: N,
  filter?: (event: QmpEventOf<N>) => boolean,
  options: Omit<EventListenerOptions<QmpEventOf<N>>, 'names' | 'filter'> = {},
): QmpEventListener<QmpEventOf<N>> {
  return new QmpEventListener<QmpEventOf<N>>({ ...options, names: [name], filter });
}
