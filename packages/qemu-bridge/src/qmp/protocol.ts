// The QMP protocol layer: greeting, capability negotiation, replies matched to
// requests by `id`, events, per-command timeouts and a clean end of the session.
// It knows no command but qmp_capabilities (part of the protocol itself) and no
// socket: it speaks over any Duplex stream (see transport.ts for sockets).
// Reference: QEMU docs/interop/qmp-spec.rst, monitor/qmp.c.
import type { Duplex } from 'node:stream';
import {
  QemuBridgeError,
  QmpArgumentError,
  QmpCommandError,
  QmpDisconnectedError,
  QmpFdPassingError,
  QmpProtocolError,
  QmpTimeoutError,
} from '../errors';
import { isEvent, parseEvent, type KnownQmpEventName, type QmpEvent, type QmpEventOf } from './events';
import { QmpEventListener, type EventListenerOptions, type SessionListener } from './event-listener';
import type { EventWait, ExecuteOptions, QmpExecutor } from './executor';
import type { FdChannel } from './fd-channel';
import { abbreviate, JsonMessageDecoder } from './framing';

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
  /**
   * Registered before the greeting is read, so they see every event of the
   * session, including one in the same chunk as the qmp_capabilities reply.
   */
  readonly onEvent?: (event: QmpEvent) => void;
  /** Listeners registered before the greeting is read (see `onEvent`). */
  readonly listeners?: readonly SessionListener[];
  /**
   * Events kept for the first listener when none is registered yet (an
   * event that arrives between open() and the caller's first onEvent/listen).
   * Default 1000; the oldest are dropped beyond it.
   */
  readonly maxEarlyEvents?: number;
  /** How to send descriptors with a command; connectQmp gives one for UNIX sockets. */
  readonly fdChannel?: FdChannel;
}

export type DisconnectReason = 'peer-closed' | 'socket-error' | 'protocol-violation' | 'closed-by-client';

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Ids are this prefix and a counter. A reply to an id of ours that is not
 * pending is the late reply of a command that timed out: dropped, as QMP's
 * spec lets a client do and qemu.qmp does, with no table of abandoned ids
 * to fill up (a monitor blocked for minutes under a caller that polls with
 * short timeouts abandons thousands).
 */
const ID_PREFIX = 'vfiokit-';

export class QmpSession implements QmpExecutor {
  readonly label: string;
  private readonly stream: Duplex;
  private readonly decoder = new JsonMessageDecoder();
  private readonly commandTimeoutMs: number;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  /** Events received while no listener was registered yet; null once one was. */
  private earlyEvents: QmpEvent[] | null = [];
  private readonly maxEarlyEvents: number;
  private readonly fdChannel: FdChannel | null;
  /** Writes wait behind a send with descriptors in progress, to keep the stream's order. */
  private writeChain: Promise<void> | null = null;
  private readonly endWaiters = new Set<(error: QmpDisconnectedError) => void>();
  private readonly listenerEnds = new Set<SessionListener>();
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
    this.maxEarlyEvents = options.maxEarlyEvents ?? 1000;
    this.fdChannel = options.fdChannel ?? null;
    if (options.onEvent) this.onEvent(options.onEvent);
    for (const listener of options.listeners ?? []) this.register(listener);
    this.streamClosed = new Promise((resolve) => stream.once('close', () => resolve()));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () =>
      this.end(
        'peer-closed',
        this.decoder.pendingBytes > 0
          ? `${this.label} closed the connection in the middle of a message`
          : // QEMU closes a QMP connection only when it exits or the chardev is
            // removed (chardev-remove); it never hands the monitor to another
            // client while one is connected (chardev/char-socket.c accepts one).
            `${this.label} closed the connection: QEMU exited, was killed, or closed this monitor`,
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
    const wanted = options.enable ?? ['oob'];
    if (!Array.isArray(wanted) || !wanted.every((c) => typeof c === 'string')) {
      stream.destroy();
      throw new QmpArgumentError(
        `QmpSession option enable must be a list of capability names, e.g. ['oob'], not ${JSON.stringify(wanted)}`,
      );
    }
    const session = new QmpSession(stream, options);
    const timeoutMs = options.greetingTimeoutMs ?? 10_000;
    // One budget for the greeting and the negotiation together: the option
    // bounds how long open() takes.
    const started = Date.now();
    try {
      const greeting = await session.withDeadline(
        session.nextGreeting(),
        timeoutMs,
        () =>
          `no QMP greeting from ${session.label} within ${timeoutMs} ms; a QEMU monitor serves one client at a time ` +
          'and greets the next only when the current one disconnects: check that no other client ' +
          '(libvirt, another vfiokit) holds it',
        'QMP greeting',
      );
      const enable = wanted.filter((cap) => greeting.capabilities.includes(cap));
      const left = Math.max(1, timeoutMs - (Date.now() - started));
      // QEMU before 2.12 has no `enable` argument and rejects any argument.
      await session.withDeadline(
        session.send('qmp_capabilities', enable.length > 0 ? { enable } : undefined, { timeoutMs: left + 1_000 }),
        left,
        () => `negotiation with ${session.label} did not finish within ${timeoutMs} ms (qmp_capabilities got no reply)`,
        'qmp_capabilities',
      );
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

  /**
   * Calls `listener` for every event until the returned function is called.
   * The first listener of a session also gets, at once, the events that
   * arrived before it (see QmpSessionOptions.maxEarlyEvents). A listener that
   * throws is reported with process.emitWarning; the session goes on.
   */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.addSink(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Registers a listener (it may have been created before the session) and
   * returns the function that unregisters it; the session ending ends it.
   */
  register(listener: SessionListener): () => void {
    if (this.ended) {
      listener.finish(this.ended);
      return () => {};
    }
    const sink = (event: QmpEvent): void => listener.deliver(event);
    const detach = (): void => {
      this.listeners.delete(sink);
      this.listenerEnds.delete(listener);
    };
    listener.detach = detach;
    this.listenerEnds.add(listener);
    this.addSink(sink);
    return detach;
  }

  /** Creates and registers a listener: `for await (const e of session.listen({ names: ['RESET'] }))`. */
  listen<E extends QmpEvent = QmpEvent>(options: EventListenerOptions<E> = {}): QmpEventListener<E> {
    const listener = new QmpEventListener<E>(options);
    this.register(listener);
    return listener;
  }

  private addSink(sink: (event: QmpEvent) => void): void {
    this.listeners.add(sink);
    const early = this.earlyEvents;
    this.earlyEvents = null;
    for (const event of early ?? []) this.callListener(sink, event);
  }

  private callListener(listener: (event: QmpEvent) => void, event: QmpEvent): void {
    try {
      listener(event);
    } catch (err) {
      // A listener's bug is not the session's, and must not become an
      // uncaught exception that kills the process either.
      process.emitWarning(
        `a QMP event listener threw on ${event.name} from ${this.label}: ${(err as Error)?.message ?? String(err)}`,
        { type: 'QmpListenerWarning', detail: (err as Error)?.stack },
      );
    }
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
      this.endWaiters.add(onEnd);
      cancel = stop;
      this.addSink(listener);
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
    const id = `${ID_PREFIX}${this.nextId++}`;
    const message: Record<string, unknown> = { [options.oob ? 'exec-oob' : 'execute']: command };
    if (args !== undefined) message.arguments = args;
    message.id = id;
    let text: string;
    try {
      text = JSON.stringify(message) + '\r\n';
    } catch (err) {
      return Promise.reject(new QmpArgumentError(`cannot send ${command}: ${unencodable(args, err as Error)}`));
    }
    const fds = options.fds ?? [];
    if (fds.length > 0 && !this.fdChannel) {
      return Promise.reject(
        new QmpFdPassingError(
          `cannot send ${command} with descriptors to ${this.label}: descriptors pass only over a UNIX socket ` +
            '(SCM_RIGHTS); connect to a -qmp unix: monitor',
        ),
      );
    }
    if (fds.some((fd) => !Number.isInteger(fd) || fd < 0)) {
      return Promise.reject(new QmpArgumentError(`cannot send ${command}: fds ${JSON.stringify(fds)} are not all open descriptors`));
    }
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
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
      if (fds.length > 0) this.writeWithFds(id, command, text, fds);
      else if (this.writeChain) this.writeChain = this.writeChain.then(() => void this.stream.write(text));
      else this.stream.write(text);
    });
  }

  private writeWithFds(id: string, command: string, text: string, fds: readonly number[]): void {
    const channel = this.fdChannel!;
    const previous = this.writeChain ?? Promise.resolve();
    const chain = previous.then(async () => {
      if (this.ended) return;
      try {
        await channel.send(Buffer.from(text, 'utf8'), fds);
      } catch (err) {
        const entry = this.pending.get(id);
        if (!entry) return;
        this.pending.delete(id);
        clearTimeout(entry.timer);
        entry.reject(err instanceof QemuBridgeError ? err : new QmpFdPassingError(`${command}: ${(err as Error).message}`, { cause: err }));
      }
    });
    this.writeChain = chain;
    void chain.then(() => {
      if (this.writeChain === chain) this.writeChain = null;
    });
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

  private withDeadline<T>(promise: Promise<T>, timeoutMs: number, message: () => string, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpTimeoutError(what, timeoutMs, message())), timeoutMs);
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
    const { messages, error } = this.decoder.push(chunk);
    // What was complete before the error is delivered first: a reply
    // followed by garbage in one chunk still reaches its command.
    for (const message of messages) {
      if (this.ended) return;
      this.onMessage(message);
    }
    if (error && !this.ended) this.violation(`${this.label} sent ${error.message}`);
  }

  private onMessage(message: unknown): void {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.violation(`${this.label} sent ${abbreviate(JSON.stringify(message))}, which is not a JSON object`);
      return;
    }
    const msg = message as Record<string, unknown>;
    if (this.greetingWaiter) {
      const greeting = parseGreeting(msg);
      if (greeting === null) {
        this.violation(`${this.label} did not start with a QMP greeting: ${abbreviate(JSON.stringify(msg))}`);
        return;
      }
      if (typeof greeting === 'string') {
        this.violation(`${this.label} sent a malformed greeting: ${greeting}`);
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
      if (this.earlyEvents) {
        if (this.earlyEvents.length >= this.maxEarlyEvents) this.earlyEvents.shift();
        this.earlyEvents.push(event);
        return;
      }
      for (const listener of [...this.listeners]) this.callListener(listener, event);
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
      if (this.issued(id)) return; // the late reply of a command that timed out
      this.violation(`${this.label} replied to id ${JSON.stringify(id)}, which this session never sent`);
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

  /** True when `id` is one this session sent (see ID_PREFIX). */
  private issued(id: string): boolean {
    if (!id.startsWith(ID_PREFIX)) return false;
    const n = Number(id.slice(ID_PREFIX.length));
    return Number.isSafeInteger(n) && n >= 1 && n < this.nextId && id === `${ID_PREFIX}${n}`;
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
    this.earlyEvents = null;
    for (const listener of [...this.listenerEnds]) listener.finish(error);
    this.listenerEnds.clear();
    for (const waiter of [...this.endWaiters]) waiter(error);
    this.endWaiters.clear();
    this.greetingWaiter = null;
    this.stream.destroy();
  }
}

/** The greeting; null when the message is no greeting, a reason when it is a malformed one. */
function parseGreeting(msg: Record<string, unknown>): QmpGreeting | string | null {
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
  const caps = qmp.capabilities;
  if (!Array.isArray(caps) || !caps.every((c): c is string => typeof c === 'string')) {
    return `the greeting's capabilities is ${(JSON.stringify(caps) ?? 'absent').slice(0, 120)}, not a list of strings (qapi/control.json QMPCapability)`;
  }
  return {
    version: {
      major: qemu.major,
      minor: qemu.minor,
      micro: qemu.micro,
      package: typeof version?.package === 'string' ? version.package : '',
    },
    capabilities: caps as string[],
  };
}

function versionText(greeting: QmpGreeting | null): string {
  if (!greeting) return 'unknown version';
  const v = greeting.version;
  return `${v.major}.${v.minor}.${v.micro}`;
}

/** Why JSON.stringify failed on `args`, naming the argument. */
function unencodable(args: Record<string, unknown> | undefined, err: Error): string {
  const seen = new Set<unknown>();
  const find = (value: unknown, path: string): string | null => {
    if (typeof value === 'bigint') {
      return `argument ${path} is a BigInt (${value}), which JSON cannot carry; pass a number (exact up to 2^53) or split the value`;
    }
    if (typeof value !== 'object' || value === null) return null;
    if (seen.has(value)) return `argument ${path} refers to itself, which JSON cannot carry`;
    seen.add(value);
    for (const [k, v] of Object.entries(value)) {
      const found = find(v, path === '' ? k : Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`);
      if (found) return found;
    }
    seen.delete(value);
    return null;
  };
  return find(args, '') ?? `its arguments cannot be written as JSON: ${err.message}`;
}
