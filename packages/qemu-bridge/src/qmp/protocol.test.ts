import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeQmpCommandError, FakeQmpPeer, NO_REPLY, QEMU_2_11_GREETING } from '@vfiokit/testkit';
import { QmpCommandError, QmpConnectError, QmpDisconnectedError, QmpTimeoutError, type QemuBridgeError } from '../errors';
import { isEvent, type QmpEvent } from './events';
import { QmpSession } from './protocol';
import { connectQmp } from './transport';

async function withPeer(
  options: Parameters<typeof FakeQmpPeer.listen>[0],
  body: (peer: FakeQmpPeer, session: QmpSession) => Promise<void>,
): Promise<void> {
  const peer = await FakeQmpPeer.listen(options);
  const session = await connectQmp(peer.address, { commandTimeoutMs: 2_000 });
  try {
    await body(peer, session);
  } finally {
    await session.close();
    await peer.close();
  }
}

test('negotiation enables oob when the greeting offers it', async (t) => {
  await withPeer({}, async (peer, session) => {
    t.deepEqual(peer.received[0], { execute: 'qmp_capabilities', arguments: { enable: ['oob'] }, id: 'vfiokit-1' });
    t.true(session.oobEnabled);
    t.deepEqual(session.greeting.version, { major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' });
  });
});

test('negotiation with a QEMU older than 2.12 sends qmp_capabilities without arguments', async (t) => {
  await withPeer({ greeting: QEMU_2_11_GREETING }, async (peer, session) => {
    t.deepEqual(peer.received[0], { execute: 'qmp_capabilities', id: 'vfiokit-1' });
    t.false(session.oobEnabled);
    t.deepEqual(await session.execute('query-version'), { qemu: { major: 2, minor: 11, micro: 2 }, package: '' });
  });
});

test('out-of-band execution is refused locally when the server did not offer oob', async (t) => {
  await withPeer({ greeting: QEMU_2_11_GREETING }, async (peer, session) => {
    const err = await t.throwsAsync<QemuBridgeError>(session.execute('migrate-pause', undefined, { oob: true }));
    t.is(err!.code, 'QMP_OOB_UNAVAILABLE');
    t.is(peer.received.length, 1);
  });
});

test('an out-of-band command is sent as exec-oob and its reply may overtake an in-band one', async (t) => {
  let release: () => void = () => {};
  const slow = new Promise<void>((resolve) => (release = resolve));
  await withPeer(
    {
      oobCommands: ['yank'],
      handlers: {
        'query-status': async () => {
          await slow;
          return { status: 'running', running: true, singlestep: false };
        },
        yank: () => ({}),
      },
    },
    async (peer, session) => {
      const inBand = session.execute('query-status');
      t.deepEqual(await session.execute('yank', { instances: [] }, { oob: true }), {});
      t.deepEqual(peer.received.at(-1), { 'exec-oob': 'yank', arguments: { instances: [] }, id: 'vfiokit-3' });
      release();
      t.deepEqual(await inBand, { status: 'running', running: true, singlestep: false });
    },
  );
});

test('replies answered out of order reach the command that asked', async (t) => {
  const calls: { id: unknown; answer: (v: unknown) => void }[] = [];
  await withPeer({}, async (peer, session) => {
    peer.handle('qom-get', (call) => {
      calls.push({ id: call.id, answer: (v) => peer.reply(call, v) });
      return NO_REPLY;
    });
    const first = session.execute('qom-get', { path: '/machine', property: 'a' });
    const second = session.execute('qom-get', { path: '/machine', property: 'b' });
    while (calls.length < 2) await new Promise((r) => setTimeout(r, 5));
    calls[1]!.answer('B');
    calls[0]!.answer('A');
    t.deepEqual(await Promise.all([first, second]), ['A', 'B']);
  });
});

test('events sent while a command is in flight are delivered before its reply', async (t) => {
  const order: string[] = [];
  await withPeer({}, async (peer, session) => {
    peer.handle('cont', ({ peer: p }) => {
      p.emitEvent('RESUME');
      p.emitEvent('DEVICE_DELETED', { device: 'nic0', path: '/machine/peripheral/nic0' });
      return {};
    });
    session.onEvent((e: QmpEvent) => {
      order.push(e.name);
      if (isEvent(e, 'DEVICE_DELETED')) order.push(e.data.device ?? '');
    });
    await session.execute('cont');
    order.push('reply');
    t.deepEqual(order, ['RESUME', 'DEVICE_DELETED', 'nic0', 'reply']);
  });
});

test('an unknown command fails with QEMU\'s CommandNotFound', async (t) => {
  await withPeer({}, async (_peer, session) => {
    const err = await t.throwsAsync(session.execute('no-such-command'), { instanceOf: QmpCommandError });
    t.is(err!.errorClass, 'CommandNotFound');
    t.is(err!.desc, 'The command no-such-command has not been found');
    t.is(err!.code, 'QMP_COMMAND_FAILED');
  });
});

test('a command error carries QEMU\'s class and description', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.handle('device_del', () => {
      throw new FakeQmpCommandError('DeviceNotFound', "Device 'zz' not found");
    });
    const err = await t.throwsAsync(session.execute('device_del', { id: 'zz' }), { instanceOf: QmpCommandError });
    t.is(err!.message, "QEMU refused device_del: Device 'zz' not found (DeviceNotFound)");
  });
});

test('malformed JSON from the peer fails every pending command with the reason', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.handle('query-status', () => NO_REPLY);
    const pending = [session.execute('query-status'), session.execute('query-status')];
    await peer.nextRequest('query-status');
    peer.sendRaw('{"return": oops}\r\n');
    for (const p of pending) {
      const err = await t.throwsAsync(p, { instanceOf: QmpDisconnectedError });
      t.is(err!.reason, 'protocol-violation');
      t.regex(err!.message, /^query-status did not complete: QEMU monitor at unix:.* sent malformed JSON/);
    }
  });
});

test('a peer that closes mid-command fails the command with reason peer-closed', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.handle('device_add', () => NO_REPLY);
    const pending = session.execute('device_add', { driver: 'e1000e', id: 'n1' });
    await peer.nextRequest('device_add');
    peer.dropConnections();
    const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
    t.is(err!.reason, 'peer-closed');
    t.is((await session.whenEnded()).reason, 'peer-closed');
  });
});

test('a peer that closes in the middle of a message is reported as such', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.handle('query-status', () => NO_REPLY);
    const pending = session.execute('query-status');
    await peer.nextRequest('query-status');
    peer.sendRaw('{"return": {"status": "runn');
    peer.endConnections();
    const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
    t.regex(err!.message, /closed the connection in the middle of a message$/);
  });
});

test('commands after the session ended fail at once with the same reason', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.dropConnections();
    await session.whenEnded();
    const err = await t.throwsAsync(session.execute('query-status'), { instanceOf: QmpDisconnectedError });
    t.is(err!.reason, 'peer-closed');
  });
});

test('a command without a reply times out and a late reply is dropped', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.handle('query-status', () => NO_REPLY);
    const arrived = peer.nextRequest('query-status');
    const err = await t.throwsAsync(session.execute('query-status', undefined, { timeoutMs: 50 }), { instanceOf: QmpTimeoutError });
    t.is(err!.timeoutMs, 50);
    peer.reply(await arrived, { status: 'running', running: true });
    peer.handle('query-status', () => ({ status: 'paused', running: false }));
    t.deepEqual(await session.execute('query-status'), { status: 'paused', running: false });
    t.is(session.endedWith, null);
  });
});

test('a reply to an id nobody asked for ends the session as a protocol violation', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.sendRaw('{"return": {}, "id": "someone-else"}\r\n');
    const ended = await session.whenEnded();
    t.is(ended.reason, 'protocol-violation');
    t.regex(ended.message, /replied to id "someone-else", which this session never sent$/);
  });
});

test('close() fails pending commands with reason closed-by-client', async (t) => {
  const peer = await FakeQmpPeer.listen({ handlers: { 'query-status': () => NO_REPLY } });
  const session = await connectQmp(peer.address);
  const pending = session.execute('query-status');
  await peer.nextRequest('query-status');
  await session.close();
  const err = await t.throwsAsync(pending, { instanceOf: QmpDisconnectedError });
  t.is(err!.reason, 'closed-by-client');
  await peer.close();
});

test('waitForEvent resolves with the first matching event', async (t) => {
  await withPeer({}, async (peer, session) => {
    const wait = session.waitForEvent('DEVICE_DELETED', (e) => e.data.device === 'b', 10_000);
    peer.emitEvent('DEVICE_DELETED', { device: 'a', path: '/machine/peripheral/a' });
    peer.emitEvent('DEVICE_DELETED', { device: 'b', path: '/machine/peripheral/b' });
    t.is((await wait.promise).data.path, '/machine/peripheral/b');
  });
});

test('waitForEvent rejects with QmpTimeoutError when no event matches in time', async (t) => {
  await withPeer({}, async (_peer, session) => {
    const wait = session.waitForEvent('DEVICE_DELETED', () => true, 30);
    const err = await t.throwsAsync(wait.promise, { instanceOf: QmpTimeoutError });
    t.is(err!.command, 'event DEVICE_DELETED');
  });
});

test('a known event with a malformed body ends the session', async (t) => {
  await withPeer({}, async (peer, session) => {
    peer.emitEvent('DEVICE_DELETED', { device: 'a' });
    t.is((await session.whenEnded()).reason, 'protocol-violation');
  });
});

/** A plain server on a fresh socket, for peers that are not QMP at all. */
async function rawServer(onConnect: (socket: Socket) => void): Promise<{ path: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-raw-'));
  const path = join(dir, 'sock');
  const server = createServer(onConnect);
  await new Promise<void>((r) => server.listen(path, () => r()));
  return {
    path,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('a peer that does not greet with QMP fails open()', async (t) => {
  const server = await rawServer((s) => s.end('{"hello": 1}\n'));
  const err = await t.throwsAsync(connectQmp({ path: server.path }), { instanceOf: QmpDisconnectedError });
  t.regex(err!.message, /did not start with a QMP greeting: "\{\\"hello\\":1\}"$/);
  await server.close();
});

test('a peer that never greets fails open() after the greeting timeout', async (t) => {
  const sockets: Socket[] = [];
  const server = await rawServer((s) => sockets.push(s));
  const err = await t.throwsAsync(QmpSession.open(connect({ path: server.path }), { greetingTimeoutMs: 50 }), {
    instanceOf: QmpTimeoutError,
  });
  t.regex(err!.message, /^no QMP greeting from QMP peer within 50 ms; /);
  for (const s of sockets) s.destroy();
  await server.close();
});

test('connecting where no socket exists names the fix', async (t) => {
  const err = await t.throwsAsync(connectQmp({ path: '/nonexistent/qmp.sock' }), { instanceOf: QmpConnectError });
  t.is(
    err!.message,
    'could not connect to QEMU monitor at unix:/nonexistent/qmp.sock: connect ENOENT /nonexistent/qmp.sock; ' +
      'no socket exists there: start QEMU with -qmp unix:/nonexistent/qmp.sock,server=on,wait=off',
  );
});
