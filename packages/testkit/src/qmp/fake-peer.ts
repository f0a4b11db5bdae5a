// A fake QEMU monitor on a UNIX socket, for unit tests of QMP clients.
// Its protocol rules and error texts are QEMU's own (monitor/qmp.c,
// qapi/qmp-dispatch.c, monitor/qmp-cmds-control.c); each text below was seen
// from a real qemu-system-x86_64 7.2, except "Capability %s not available",
// taken from qmp_caps_accept() because 7.2 offers oob on every QMP monitor.
// Commands are whatever handlers the test registers.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeQmpGreeting {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
  readonly package: string;
  /** Offered capabilities; QEMU 2.12+ offers ['oob'] on monitors that can run it. */
  readonly capabilities: readonly string[];
  /** False models QEMU before 2.12, whose qmp_capabilities takes no arguments. */
  readonly acceptsEnable: boolean;
}

export const QEMU_7_2_GREETING: FakeQmpGreeting = {
  major: 7,
  minor: 2,
  micro: 22,
  package: 'Debian 1:7.2+dfsg-7+deb12u18+b3',
  capabilities: ['oob'],
  acceptsEnable: true,
};

/** QEMU 2.11: greeting has no capabilities and qmp_capabilities has no `enable`. */
export const QEMU_2_11_GREETING: FakeQmpGreeting = {
  major: 2,
  minor: 11,
  micro: 2,
  package: '',
  capabilities: [],
  acceptsEnable: false,
};

/** Returned by a handler: never answer this request (the test decides what happens next). */
export const NO_REPLY: unique symbol = Symbol('NO_REPLY');

/** Thrown by a handler: the peer answers with `{"error": {"class", "desc"}}`. */
export class FakeQmpCommandError extends Error {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(desc);
  }
}

export interface FakeQmpCall {
  readonly command: string;
  readonly arguments: Record<string, unknown> | undefined;
  readonly id: unknown;
  readonly oob: boolean;
  readonly peer: FakeQmpPeer;
}

export type FakeQmpHandler = (call: FakeQmpCall) => unknown | typeof NO_REPLY | Promise<unknown>;

export interface FakeQmpPeerOptions {
  readonly greeting?: FakeQmpGreeting;
  readonly handlers?: Readonly<Record<string, FakeQmpHandler>>;
  /** Commands whose schema has `allow-oob: true` (7.2: migrate-recover, migrate-pause, yank, ...). */
  readonly oobCommands?: readonly string[];
}

interface Connection {
  readonly socket: Socket;
  negotiated: boolean;
  oob: boolean;
  buffer: string;
}

export class FakeQmpPeer {
  readonly path: string;
  /** Every request received, in order, as parsed JSON. */
  readonly received: Record<string, unknown>[] = [];
  private readonly dir: string;
  private readonly server: Server;
  private readonly greeting: FakeQmpGreeting;
  private readonly handlers = new Map<string, FakeQmpHandler>();
  private readonly oobCommands: ReadonlySet<string>;
  private readonly connections = new Set<Connection>();
  private readonly requestWaiters: { command: string; resolve: (call: FakeQmpCall) => void }[] = [];

  private constructor(options: FakeQmpPeerOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'vfiokit-fakeqmp-'));
    this.path = join(this.dir, 'qmp.sock');
    this.greeting = options.greeting ?? QEMU_7_2_GREETING;
    this.oobCommands = new Set(options.oobCommands ?? []);
    this.handlers.set('query-version', () => ({
      qemu: { major: this.greeting.major, minor: this.greeting.minor, micro: this.greeting.micro },
      package: this.greeting.package,
    }));
    for (const [name, handler] of Object.entries(options.handlers ?? {})) this.handlers.set(name, handler);
    this.server = createServer((socket) => this.accept(socket));
  }

  static async listen(options: FakeQmpPeerOptions = {}): Promise<FakeQmpPeer> {
    const peer = new FakeQmpPeer(options);
    await new Promise<void>((resolve, reject) => {
      peer.server.once('error', reject);
      peer.server.listen(peer.path, () => resolve());
    });
    return peer;
  }

  get address(): { readonly path: string } {
    return { path: this.path };
  }

  handle(command: string, handler: FakeQmpHandler): this {
    this.handlers.set(command, handler);
    return this;
  }

  /** Sends an event, as QEMU does, to every client past negotiation. */
  emitEvent(name: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    const message: Record<string, unknown> = {
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
      event: name,
    };
    if (data !== undefined) message.data = data;
    for (const conn of this.connections) {
      if (conn.negotiated) conn.socket.write(JSON.stringify(message) + '\r\n');
    }
  }

  /** Writes bytes as they are to every client (for malformed input). */
  sendRaw(text: string): void {
    for (const conn of this.connections) conn.socket.write(text);
  }

  /** Answers a request the handler left unanswered (returned NO_REPLY). */
  reply(call: FakeQmpCall, value: unknown): void {
    const message: Record<string, unknown> = { return: value };
    if (call.id !== undefined) message.id = call.id;
    this.sendRaw(JSON.stringify(message) + '\r\n');
  }

  /** Resolves when the next request for `command` arrives. */
  nextRequest(command: string): Promise<FakeQmpCall> {
    return new Promise((resolve) => this.requestWaiters.push({ command, resolve }));
  }

  /** Closes every client connection after what was written reaches it (a clean exit). */
  endConnections(): void {
    for (const conn of this.connections) conn.socket.end();
  }

  /** Closes every client connection at once, as a QEMU that crashes does. */
  dropConnections(): void {
    for (const conn of this.connections) conn.socket.destroy();
    this.connections.clear();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private accept(socket: Socket): void {
    const conn: Connection = { socket, negotiated: false, oob: false, buffer: '' };
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
    socket.on('error', () => this.connections.delete(conn));
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      conn.buffer += text;
      let nl: number;
      // Clients under test send one request per line; QEMU's streamer is
      // more lenient, but a line protocol is enough to check a client.
      while ((nl = conn.buffer.indexOf('\n')) >= 0) {
        const line = conn.buffer.slice(0, nl).trim();
        conn.buffer = conn.buffer.slice(nl + 1);
        if (line) void this.dispatch(conn, line);
      }
    });
    const g = this.greeting;
    socket.write(
      JSON.stringify({
        QMP: {
          version: { qemu: { micro: g.micro, minor: g.minor, major: g.major }, package: g.package },
          capabilities: [...g.capabilities],
        },
      }) + '\r\n',
    );
  }

  private async dispatch(conn: Connection, line: string): Promise<void> {
    let request: Record<string, unknown>;
    try {
      request = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      this.send(conn, undefined, { error: { class: 'GenericError', desc: `JSON parse error, ${(err as Error).message}` } });
      return;
    }
    this.received.push(request);
    const id = request.id;
    const oob = 'exec-oob' in request;
    // qmp_dispatch(): exec-oob is an unexpected member unless oob was negotiated.
    if (oob && !conn.oob) {
      this.send(conn, id, { error: { class: 'GenericError', desc: "QMP input member 'exec-oob' is unexpected" } });
      return;
    }
    const command = oob ? request['exec-oob'] : request.execute;
    if (typeof command !== 'string') {
      this.send(conn, id, { error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } });
      return;
    }
    const args = request.arguments as Record<string, unknown> | undefined;
    if (command === 'qmp_capabilities') {
      this.negotiate(conn, id, args);
      return;
    }
    if (!conn.negotiated) {
      this.send(conn, id, {
        error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
      });
      return;
    }
    const handler = this.handlers.get(command);
    if (!handler) {
      this.send(conn, id, { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } });
      return;
    }
    if (oob && !this.oobCommands.has(command)) {
      this.send(conn, id, { error: { class: 'GenericError', desc: `The command ${command} does not support OOB` } });
      return;
    }
    const call: FakeQmpCall = { command, arguments: args, id, oob, peer: this };
    const waiters = this.requestWaiters.filter((w) => w.command === command);
    for (const w of waiters) {
      this.requestWaiters.splice(this.requestWaiters.indexOf(w), 1);
      w.resolve(call);
    }
    try {
      const value = await handler(call);
      if (value === NO_REPLY) return;
      this.send(conn, id, { return: value === undefined ? {} : value });
    } catch (err) {
      if (err instanceof FakeQmpCommandError) {
        this.send(conn, id, { error: { class: err.errorClass, desc: err.desc } });
      } else {
        this.send(conn, id, { error: { class: 'GenericError', desc: (err as Error).message } });
      }
    }
  }

  private negotiate(conn: Connection, id: unknown, args: Record<string, unknown> | undefined): void {
    // qmp_qmp_capabilities() in monitor/qmp-cmds-control.c
    if (conn.negotiated) {
      this.send(conn, id, {
        error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
      });
      return;
    }
    if (args !== undefined && !this.greeting.acceptsEnable) {
      const name = Object.keys(args)[0] ?? 'arguments';
      this.send(conn, id, { error: { class: 'GenericError', desc: `Parameter '${name}' is unexpected` } });
      return;
    }
    const enable = (args?.enable ?? []) as unknown[];
    for (const cap of enable) {
      if (cap !== 'oob') {
        // QEMU 7.2 really names the parameter 'null' here.
        this.send(conn, id, {
          error: { class: 'GenericError', desc: `Parameter 'null' does not accept value '${String(cap)}'` },
        });
        return;
      }
      if (!this.greeting.capabilities.includes(cap)) {
        this.send(conn, id, { error: { class: 'GenericError', desc: `Capability ${cap} not available` } });
        return;
      }
    }
    conn.negotiated = true;
    conn.oob = enable.includes('oob');
    this.send(conn, id, { return: {} });
  }

  private send(conn: Connection, id: unknown, body: Record<string, unknown>): void {
    const message = id === undefined ? body : { ...body, id };
    if (!conn.socket.destroyed) conn.socket.write(JSON.stringify(message) + '\r\n');
  }
}
