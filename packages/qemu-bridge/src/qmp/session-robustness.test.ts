// A session over time and against bad peers: the numbered points of issue 15,
// each against the fake peer (QEMU's own behaviour is in real-qemu-matrix.test.ts).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeQmpPeer, NO_REPLY, type FakeQmpCall } from '@vfiokit/testkit';
import { QemuBridgeError, QmpDisconnectedError, QmpTimeoutError } from '../errors';
import type { QmpEvent } from './events';
import { QmpSession } from './protocol';
import { connectQmp } from './transport';

async function withPeer(body: (peer: FakeQmpPeer, session: QmpSession) => Promise<void>): Promise<void> {
  const peer = await FakeQmpPeer.listen({});
  const session = await connectQmp(peer.address, { commandTimeoutMs: 5_000 });
  try {
    await body(peer, session);
  } finally {
    await session.close();
    await peer.close();
  }
}

/** A plain server on a fresh socket that writes `script` to each client. */
async function rawServer(onConnect: (socket: Socket) => void): Promise<{ path: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-raw-'));
  const path = join(dir, 'sock');
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    onConnect(s);
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  return {
    path,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}\r\n';

test('a session survives 1100 abandoned commands and answers afterwards', async (t) => {
  await withPeer(async (peer, session) => {
    const calls: FakeQmpCall[] = [];
    peer.handle('query-status', (call) => {
      calls.push(call);
      return NO_REPLY;
    });
    const timedOut = await Promise.allSettled(
      Array.from({ length: 1100 }, () => session.execute('query-status', undefined, { timeoutMs: 200 })),
    );
    t.true(timedOut.every((r) => r.status === 'rejected' && r.reason instanceof QmpTimeoutError));
    while (calls.length < 1100) await new Promise((r) => setTimeout(r, 10));
    // The monitor unblocks and answers all of them, oldest first.
    for (const call of calls) peer.reply(call, { status: 'running', running: true });
    peer.handle('query-status', () => ({ status: 'paused', running: false }));
    t.deepEqual(await session.execute('query-status'), { status: 'paused', running: false });
    t.is(session.endedWith, null);
  });
});

test('a reply to an id this session never issued is still a protocol violation', async (t) => {
  await withPeer(async (peer, session) => {
    peer.sendRaw('{"return": {}, "id": "vfiokit-999999"}\r\n');
    const ended = await session.whenEnded();
    t.is(ended.reason, 'protocol-violation');
    t.regex(ended.message, /replied to id "vfiokit-999999", which this session never sent$/);
  });
});

test('a truncated line followed by valid replies ends the session as a protocol violation', async (t) => {
  await withPeer(async (peer, session) => {
    peer.handle('query-status', () => NO_REPLY);
    const pending = session.execute('query-status');
    const call = await peer.nextRequest('query-status');
    peer.sendRaw('{"return": {"status": "runn\r\n');
    peer.reply(call, { status: 'running', running: true });
    const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
    t.is(err!.reason, 'protocol-violation');
    t.regex(err!.message, /sent a truncated message: a line ended inside a string in "\{\\"return\\": \{\\"status\\": \\"runn"/);
  });
});

test('a line cut outside a string, followed by a new message, is a protocol violation', async (t) => {
  await withPeer(async (peer, session) => {
    peer.handle('query-status', () => NO_REPLY);
    const pending = session.execute('query-status');
    const call = await peer.nextRequest('query-status');
    peer.sendRaw('{"return": {"status": "running",\r\n');
    peer.reply(call, { status: 'running', running: true });
    const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
    t.is(err!.reason, 'protocol-violation');
    t.regex(err!.message, /sent a truncated message: a new message began at the start of a line/);
  });
});

test('a valid reply followed by garbage in the same chunk reaches its command before the session ends', async (t) => {
  await withPeer(async (peer, session) => {
    peer.handle('query-status', (call) => {
      peer.sendRaw(`{"return": {"status": "running"}, "id": ${JSON.stringify(call.id)}}\r\ngarbage\r\n`);
      return NO_REPLY;
    });
    t.deepEqual(await session.execute('query-status'), { status: 'running' });
    const ended = await session.whenEnded();
    t.is(ended.reason, 'protocol-violation');
    t.regex(ended.message, /sent unexpected "g" between messages/);
  });
});

test('an event in the same chunk as the qmp_capabilities reply reaches a listener registered before connect', async (t) => {
  const server = await rawServer((s) => {
    s.write(GREETING);
    s.once('data', () =>
      s.write(
        '{"return": {}, "id": "vfiokit-1"}\r\n' +
          '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}\r\n',
      ),
    );
  });
  const seen: string[] = [];
  const session = await connectQmp({ path: server.path }, { onEvent: (e: QmpEvent) => seen.push(e.name) });
  t.deepEqual(seen, ['RESUME']);
  await session.close();
  await server.close();
});

test('an event in the same chunk as the qmp_capabilities reply reaches the first listener registered after open()', async (t) => {
  const server = await rawServer((s) => {
    s.write(GREETING);
    s.once('data', () =>
      s.write(
        '{"return": {}, "id": "vfiokit-1"}\r\n' +
          '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}\r\n',
      ),
    );
  });
  const session = await connectQmp({ path: server.path });
  await new Promise((r) => setTimeout(r, 20));
  const seen: string[] = [];
  session.onEvent((e) => seen.push(e.name));
  t.deepEqual(seen, ['RESUME']);
  await session.close();
  await server.close();
});

test('a BigInt argument is refused with a QemuBridgeError naming the argument, and nothing is sent', async (t) => {
  await withPeer(async (peer, session) => {
    const before = peer.received.length;
    const err = await t.throwsAsync(session.execute('memsave', { val: 1n << 40n, size: 4096, filename: '/dev/null' }));
    t.true(err instanceof QemuBridgeError);
    t.is((err as QemuBridgeError).code, 'QMP_INVALID_ARGUMENTS');
    t.is(
      err!.message,
      'cannot send memsave: argument val is a BigInt (1099511627776), which JSON cannot carry; ' +
        'pass a number (exact up to 2^53) or split the value',
    );
    t.is(peer.received.length, before);
    t.is(session.endedWith, null);
  });
});

test('a peer that closes says QEMU exited, not that another client took the monitor', async (t) => {
  await withPeer(async (peer, session) => {
    peer.endConnections();
    const ended = await session.whenEnded();
    t.is(ended.reason, 'peer-closed');
    t.notRegex(ended.message, /another client/);
    t.regex(ended.message, /closed the connection: QEMU exited, was killed, or closed this monitor/);
  });
});

test('no greeting in time says a QEMU monitor serves one client at a time', async (t) => {
  const server = await rawServer(() => {});
  const err = await t.throwsAsync(connectQmp({ path: server.path }, { greetingTimeoutMs: 50 }), {
    instanceOf: QmpTimeoutError,
  });
  t.regex(
    err!.message,
    /^no QMP greeting from QEMU monitor at unix:.* within 50 ms; a QEMU monitor serves one client at a time and greets the next only when the current one disconnects: check that no other client \(libvirt, another vfiokit\) holds it$/,
  );
  await server.close();
});

test('the greeting timeout bounds greeting and negotiation together', async (t) => {
  // The peer greets after 60 ms and answers qmp_capabilities 60 ms later: with
  // a 100 ms budget, the 120 ms total must fail, though each step alone fits.
  const server = await rawServer((s) => {
    setTimeout(() => s.write(GREETING), 60);
    s.once('data', (d) => {
      const id = JSON.parse(d.toString()).id;
      setTimeout(() => s.write(`{"return": {}, "id": ${JSON.stringify(id)}}\r\n`), 60);
    });
  });
  const err = await t.throwsAsync(connectQmp({ path: server.path }, { greetingTimeoutMs: 100 }), {
    instanceOf: QmpTimeoutError,
  });
  // On a loaded machine the greeting itself may come late: either way open()
  // fails, where a timeout applied to each step in turn let it succeed.
  t.regex(err!.message, /^(negotiation with QEMU monitor at unix:.* did not finish within 100 ms|no QMP greeting from .* within 100 ms)/);
  await server.close();
});

test('a greeting whose capabilities is a string, not a list, is a protocol violation', async (t) => {
  const server = await rawServer((s) =>
    s.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": ""}, "capabilities": "oob"}}\r\n'),
  );
  const err = await t.throwsAsync(connectQmp({ path: server.path }), { instanceOf: QmpDisconnectedError });
  t.is(err!.reason, 'protocol-violation');
  t.regex(err!.message, /greeting's capabilities is "oob", not a list of strings/);
  await server.close();
});

test('enable given as a string, not a list, is refused before connecting', async (t) => {
  await t.throwsAsync(
    // @ts-expect-error: the mistake a JavaScript caller makes
    QmpSession.open(connect({ path: '/nonexistent' }), { enable: 'oob' }),
    { instanceOf: QemuBridgeError, message: "QmpSession option enable must be a list of capability names, e.g. ['oob'], not \"oob\"" },
  );
});

test('a listener that throws is reported as a warning and the other listeners and the session go on', async (t) => {
  await withPeer(async (peer, session) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown): void => {
      uncaught.push(e);
    };
    process.on('warning', onWarning);
    process.prependListener('uncaughtException', onUncaught);
    try {
      session.onEvent(() => {
        throw new Error('listener bug');
      });
      const seen: string[] = [];
      session.onEvent((e) => seen.push(e.name));
      peer.emitEvent('STOP');
      peer.emitEvent('RESUME');
      t.deepEqual(await session.execute('query-version'), {
        qemu: { major: 7, minor: 2, micro: 22 },
        package: 'Debian 1:7.2+dfsg-7+deb12u18+b3',
      });
      await new Promise((r) => setTimeout(r, 20));
      t.deepEqual(seen, ['STOP', 'RESUME']);
      t.deepEqual(uncaught, []);
      t.is(warnings.length, 2);
      t.regex(warnings[0]!.message, /^a QMP event listener threw on STOP from QEMU monitor at unix:.*: listener bug$/);
      t.is(session.endedWith, null);
    } finally {
      process.off('warning', onWarning);
      process.off('uncaughtException', onUncaught);
    }
  });
});
