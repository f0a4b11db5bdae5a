import test from 'ava';
import { FakeQmpPeer } from '@vfiokit/testkit';
import { eventListener, QmpEventListener, QmpEventTimeoutError } from './event-listener';
import type { QmpEvent } from './events';
import { connectQmp } from './transport';

test('a listener created before connect and given to it receives the session\'s events by name and filter', async (t) => {
  const peer = await FakeQmpPeer.listen({});
  const deleted = eventListener('DEVICE_DELETED', (e) => e.data.device?.startsWith('hostdev') ?? false);
  const session = await connectQmp(peer.address, { listeners: [deleted] });
  peer.emitEvent('STOP');
  peer.emitEvent('DEVICE_DELETED', { device: 'nic0', path: '/machine/peripheral/nic0' });
  peer.emitEvent('DEVICE_DELETED', { device: 'hostdev0', path: '/machine/peripheral/hostdev0' });
  const e = await deleted.get(5_000);
  t.is(e.data.path, '/machine/peripheral/hostdev0');
  t.is(deleted.buffered, 0);
  await session.close();
  await peer.close();
});

test('events are buffered until read, and async iteration ends with the session after the buffer', async (t) => {
  const peer = await FakeQmpPeer.listen({});
  const session = await connectQmp(peer.address);
  const all = session.listen({ names: ['STOP', 'RESUME'] });
  for (let i = 0; i < 3; i++) {
    peer.emitEvent('STOP');
    peer.emitEvent('RESET', { guest: false, reason: 'host-qmp-system-reset' });
    peer.emitEvent('RESUME');
  }
  await session.execute('query-version'); // every event above has arrived
  t.is(all.buffered, 6);
  peer.dropConnections();
  const names: string[] = [];
  for await (const e of all) names.push(e.name);
  t.deepEqual(names, ['STOP', 'RESUME', 'STOP', 'RESUME', 'STOP', 'RESUME']);
  t.is(all.endedWith?.reason, 'peer-closed');
  await session.close();
  await peer.close();
});

test('breaking out of a for-await loop unregisters the listener', async (t) => {
  const peer = await FakeQmpPeer.listen({});
  const session = await connectQmp(peer.address);
  const listener = session.listen();
  peer.emitEvent('STOP');
  for await (const e of listener) {
    t.is(e.name, 'STOP');
    break;
  }
  peer.emitEvent('RESUME');
  await session.execute('query-version');
  t.is(listener.buffered, 0);
  t.deepEqual((await listener.next()).done, true);
  await session.close();
  await peer.close();
});

test('a listener that is not read drops its oldest events beyond maxBuffered and counts them', async (t) => {
  const listener = new QmpEventListener({ maxBuffered: 2 });
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  const ev = (n: number): QmpEvent => ({ name: 'STOP', data: { n }, timestamp: { seconds: n, microseconds: 0 } });
  for (let i = 1; i <= 5; i++) listener.deliver(ev(i));
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  t.is(listener.dropped, 3);
  t.deepEqual(listener.drain().map((e) => e.timestamp.seconds), [4, 5]);
  t.is(warnings.length, 1);
  t.regex(warnings[0]!.message, /dropped its oldest event: 2 events were unread/);
});

test('get() with a timeout rejects with QmpEventTimeoutError naming the events', async (t) => {
  const listener = eventListener('RESET');
  const err = await t.throwsAsync(listener.get(20), { instanceOf: QmpEventTimeoutError });
  t.is(err!.message, 'no event for RESET within 20 ms');
});

test('a listener registered with a session that already ended ends at once', async (t) => {
  const peer = await FakeQmpPeer.listen({});
  const session = await connectQmp(peer.address);
  await session.close();
  const listener = session.listen();
  t.true((await listener.next()).done);
  t.is(listener.endedWith?.reason, 'closed-by-client');
  await peer.close();
});
