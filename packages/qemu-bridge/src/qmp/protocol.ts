// The QMP protocol layer: greeting, capability negotiation, replies matched to
// requests by `id`, events, per-command timeouts and a clean end of the session.
// It knows no command but qmp_capabilities (part of the protocol itself) and no
// socket: it speaks over any Duplex stream (see transport.ts for sockets).
// Reference: QEMU docs/interop/qmp-spec.rst, monitor/qmp.c.
import type { Duplex } from 'node:stream';
import {
  QemuBridgeError,
  QmpCommandError,
  QmpDisconnectedError,
  QmpProtocolError,
  QmpTimeoutError,
} from '../errors';
import { isEvent, parseEvent, type KnownQmpEventName, type QmpEvent, type QmpEventOf } from './events';
import type { EventWait, ExecuteOptions, QmpExecutor } from './executor';
import { abbreviate, encodeMessage, FramingError, JsonMessageDecoder } from './framing';

export interface QemuVersionTriple {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
}

export interface QmpGreeting {
  readonly version: QemuVersionTriple & { readonly package: string };
  /** Capabilities the server offers (QEMU 2.12+ offers `oob`). */
  readonly capabilities: readonly string[];
}

export interface QmpSessionOptions {
  /** Name of the peer in messages, e.g. the socket path. */
  readonly label?: string;
  /** How long to wait for the greeting and the negotiation reply. Default 10 s. */
  readonly greetingTimeoutMs?: number;
  /** Default timeout of every command. Default 30 s. */
  readonly commandTimeoutMs?: number;
  /** Capabilities to enable when the greeting offers them. Default ['oob']. */
  readonly enable?: readonly string[];
}

export type DisconnectReason = 'peer-closed' | 'socket-error' | 'protocol-violation' | 'closed-by-client';

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** Ids of timed-out commands whose late replies are dropped, oldest first. */
const MAX_ABANDONED = 1024;

export class QmpSession implements QmpExecutor {
  readonly label: string;
  private readonly stream: Duplex;
  private readonly decoder = new JsonMessageDecoder();
  private readonly commandTimeoutMs: number;
  private readonly pending = new Map<string, Pending>();
  private readonly abandoned = new Set<string>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private readonly endWaiters = new Set<(error: QmpDisconnectedError) => void>();
  private nextId = 1;
  private ended: QmpDisconnectedError | null = null;
  private greetingWaiter: ((greeting: QmpGreeting) => void) | null = null;
  private greetingValue: QmpGreeting | null = null;
  private enabledCapabilities: readonly string[] = [];
  private readonly streamClosed: Promise<void>;

  private constructor(stream: Duplex, options: QmpSessionOptions) {
    this.stream = stream;
    this.label = options.label ?? 'QMP peer';
    this.commandTimeoutMs = options.commandTimeoutMs ?? 30_000;
    this.streamClosed = new Promise((resolve) => stream.once('close', () => resolve()));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () =>
      this.end(
        'peer-closed',
        this.decoder.pendingChars > 0
          ? `${this.label} closed the connection in the middle of a message`
          : `${this.label} closed the connection (QEMU exited or another client took the monitor)`,
      ),
    );
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // A reset or broken pipe is the peer going away with data in flight
      // (QEMU killed while it had unread requests): the same as a close.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        this.end('peer-closed', `${this.label} dropped the connection (${err.code}): QEMU exited or was killed`, err);
      } else {
        this.end('socket-error', `connection to ${this.label} failed: ${err.message}`, err);
      }
    });
    stream.on('close', () => this.end('peer-closed', `connection to ${this.label} closed`));
  }

  /**
   * Reads the greeting on `stream` and negotiates capabilities. Resolves when
   * commands may be sent; on failure the stream is destroyed.
   */
  static async open(stream: Duplex, options: QmpSessionOptions = {}): Promise<QmpSession> {
    const session = new QmpSession(stream, options);
    const timeoutMs = options.greetingTimeoutMs ?? 10_000;
    try {
      const greeting = await session.withDeadline(session.nextGreeting(), timeoutMs, 'QMP greeting');
      const wanted = options.enable ?? ['oob'];
      const enable = wanted.filter((cap) => greeting.capabilities.includes(cap));
      // QEMU before 2.12 has no `enable` argument and rejects any argument.
      await session.send('qmp_capabilities', enable.length > 0 ? { enable } : undefined, { timeoutMs });
      session.enabledCapabilities = enable;
      return session;
    } catch (err) {
      if (!session.ended) {
        session.end('closed-by-client', `negotiation with ${session.label} failed: ${(err as Error).message}`);
      }
      throw err;
    }
  }

  get greeting(): QmpGreeting {
    if (!this.greetingValue) throw new Error('QmpSession.greeting read before open() finished');
    return this.greetingValue;
  }

  /** Capabilities this session enabled in negotiation. */
  get capabilities(): readonly string[] {
    return this.enabledCapabilities;
  }

  get oobEnabled(): boolean {
    return this.enabledCapabilities.includes('oob');
  }

  /** The error the session ended with, or null while it is open. */
  get endedWith(): QmpDisconnectedError | null {
    return this.ended;
  }

  /** Resolves with the reason once the session has ended, however it ended. */
  whenEnded(): Promise<QmpDisconnectedError> {
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve) => this.endWaiters.add(resolve));
  }

  execute(command: string, args?: Record<string, unknown>, options: ExecuteOptions = {}): Promise<unknown> {
    if (command === 'qmp_capabilities') {
      return Promise.reject(
        new QmpProtocolError('qmp_capabilities is sent by QmpSession.open(); a session negotiates once'),
      );
    }
    return this.send(command, args, options);
  }

  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitForEvent<N extends KnownQmpEventName>(
    name: N,
    match: (event: QmpEventOf<N>) => boolean,
    timeoutMs: number,
  ): EventWait<QmpEventOf<N>> {
    let cancel = (): void => {};
    const promise = new Promise<QmpEventOf<N>>((resolve, reject) => {
      if (this.ended) {
        reject(this.ended);
        return;
      }
      const stop = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        this.endWaiters.delete(onEnd);
      };
      const listener = (event: QmpEvent): void => {
        if (isEvent(event, name) && match(event)) {
          stop();
          resolve(event);
        }
      };
      const onEnd = (error: QmpDisconnectedError): void => {
        stop();
        reject(error);
      };
      const timer = setTimeout(() => {
        stop();
        reject(
          new QmpTimeoutError(`event ${name}`, timeoutMs, `no matching ${name} event from ${this.label} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.listeners.add(listener);
      this.endWaiters.add(onEnd);
      cancel = stop;
    });
    return { promise, cancel: () => cancel() };
  }

  /** Ends the session; pending commands fail with reason `closed-by-client`. */
  async close(): Promise<void> {
    this.end('closed-by-client', `the session with ${this.label} was closed by this client`);
    await this.streamClosed;
  }

  private send(command: string, args: Record<string, unknown> | undefined, options: ExecuteOptions): Promise<unknown> {
    if (this.ended) return Promise.reject(this.ended);
    if (options.oob && !this.oobEnabled) {
      return Promise.reject(
        new QemuBridgeError(
          'QMP_OOB_UNAVAILABLE',
          `cannot run ${command} out of band: ${this.label} (QEMU ${versionText(this.greetingValue)}) ` +
            `did not offer the 'oob' capability, which QEMU 2.12+ offers on monitors it runs in their own thread; run it in-band`,
        ),
      );
    }
    const id = `vfiokit-${this.nextId++}`;
    const message: Record<string, unknown> = { [options.oob ? 'exec-oob' : 'execute']: command };
    if (args !== undefined) message.arguments = args;
    message.id = id;
    let text: string;
    try {
      text = encodeMessage(message);
    } catch (err) {
      return Promise.reject(err); // e.g. a bigint argument: JSON has none
    }
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.abandon(id);
        reject(
          new QmpTimeoutError(
            command,
            timeoutMs,
            `${command} got no reply from ${this.label} within ${timeoutMs} ms; QEMU may still carry it out ` +
              `(a monitor blocked by a long command, or a stopped QEMU process, looks like this)`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      this.stream.write(text);
    });
  }

  private abandon(id: string): void {
    this.abandoned.add(id);
    if (this.abandoned.size > MAX_ABANDONED) {
      const oldest = this.abandoned.values().next().value as string;
      this.abandoned.delete(oldest);
    }
  }

  private nextGreeting(): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const onEnd = (error: QmpDisconnectedError): void => reject(error);
      this.endWaiters.add(onEnd);
      this.greetingWaiter = (greeting) => {
        this.endWaiters.delete(onEnd);
        resolve(greeting);
      };
    });
  }

  private withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new QmpTimeoutError(what, timeoutMs, `no ${what} from ${this.label} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      this.violation(`${this.label} sent ${err.message}`);
      return;
    }
    for (const message of messages) {
      if (this.ended) return;
      this.onMessage(message);
    }
  }

  private onMessage(message: unknown): void {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.violation(`${this.label} sent ${abbreviate(JSON.stringify(message))}, which is not a JSON object`);
      return;
    }
    const msg = message as Record<string, unknown>;
    if (this.greetingWaiter) {
      const greeting = parseGreeting(msg);
      if (!greeting) {
        this.violation(`${this.label} did not start with a QMP greeting: ${abbreviate(JSON.stringify(msg))}`);
        return;
      }
      const waiter = this.greetingWaiter;
      this.greetingWaiter = null;
      this.greetingValue = greeting;
      waiter(greeting);
      return;
    }
    if ('event' in msg) {
      const event = parseEvent(msg);
      if (!event) {
        this.violation(`${this.label} sent a malformed event: ${abbreviate(JSON.stringify(msg))}`);
        return;
      }
      for (const listener of [...this.listeners]) {
        try {
          listener(event);
        } catch (err) {
          // A listener's bug is not the session's: report it like an
          // EventEmitter would, outside this stack.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
      return;
    }
    if ('return' in msg || 'error' in msg) {
      this.onReply(msg);
      return;
    }
    this.violation(`${this.label} sent a message that is neither reply nor event: ${abbreviate(JSON.stringify(msg))}`);
  }

  private onReply(msg: Record<string, unknown>): void {
    const id = msg.id;
    if (typeof id !== 'string') {
      // QEMU answers without an id only when it could not read the request's
      // id, i.e. it could not parse what this client sent.
      this.violation(`${this.label} sent a reply with no id of ours: ${abbreviate(JSON.stringify(msg))}`);
      return;
    }
    const entry = this.pending.get(id);
    if (!entry) {
      if (this.abandoned.delete(id)) return; // late reply to a command that timed out
      this.violation(`${this.label} replied to id ${JSON.stringify(id)}, which no pending command has`);
      return;
    }
    this.pending.delete(id);
    clearTimeout(entry.timer);
    if ('error' in msg) {
      const error = msg.error as Record<string, unknown> | null;
      const cls = typeof error?.class === 'string' ? error.class : 'GenericError';
      const desc = typeof error?.desc === 'string' ? error.desc : JSON.stringify(error);
      entry.reject(new QmpCommandError(entry.command, cls, desc));
    } else {
      entry.resolve(msg.return);
    }
  }

  private violation(message: string): void {
    this.end('protocol-violation', message, new QmpProtocolError(message));
  }

  private end(reason: DisconnectReason, message: string, cause?: unknown): void {
    if (this.ended) return;
    const error = new QmpDisconnectedError(reason, message, cause === undefined ? undefined : { cause });
    this.ended = error;
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(
        new QmpDisconnectedError(reason, `${entry.command} did not complete: ${message}`, { cause: error }),
      );
    }
    this.pending.clear();
    this.listeners.clear();
    for (const waiter of [...this.endWaiters]) waiter(error);
    this.endWaiters.clear();
    this.greetingWaiter = null;
    this.stream.destroy();
  }
}

function parseGreeting(msg: Record<string, unknown>): QmpGreeting | null {
  const qmp = msg.QMP as Record<string, unknown> | undefined;
  if (typeof qmp !== 'object' || qmp === null) return null;
  const version = qmp.version as Record<string, unknown> | undefined;
  const qemu = version?.qemu as Record<string, unknown> | undefined;
  if (
    typeof qemu?.major !== 'number' ||
    typeof qemu.minor !== 'number' ||
    typeof qemu.micro !== 'number'
  ) {
    return null;
  }
  const caps = Array.isArray(qmp.capabilities) ? qmp.capabilities.filter((c): c is string => typeof c === 'string') : [];
  return {
    version: {
      major: qemu.major,
      minor: qemu.minor,
      micro: qemu.micro,
      package: typeof version?.package === 'string' ? version.package : '',
    },
    capabilities: caps,
  };
}

function versionText(greeting: QmpGreeting | null): string {
  if (!greeting) return 'unknown version';
  const v = greeting.version;
  return `${v.major}.${v.minor}.${v.micro}`;
}
