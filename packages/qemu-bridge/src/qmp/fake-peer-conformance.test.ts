// The fake QMP peer must answer protocol mistakes exactly as QEMU does. The
// same raw request scripts go to testkit's FakeQmpPeer and to a real
// qemu-system-x86_64, and the replies must be identical.
import test from 'ava';
import { connect } from 'node:net';
import { FakeQmpPeer, qemuAvailable, startTestQemu } from '@vfiokit/testkit';

/** Sends each request line and collects one reply per request (events are ignored). */
async function replies(path: string, requests: readonly object[]): Promise<unknown[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await runScript(path, requests);
    } catch (err) {
      // QEMU binds its socket a moment before it listens.
      if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || attempt > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function runScript(path: string, requests: readonly object[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const out: unknown[] = [];
    let buffer = '';
    let greeted = false;
    socket.setEncoding('utf8');
    socket.on('error', reject);
    const sendNext = (): void => {
      const next = requests[out.length];
      if (next === undefined) {
        socket.destroy();
        resolve(out);
      } else {
        socket.write(JSON.stringify(next) + '\n');
      }
    };
    socket.on('data', (text: string) => {
      buffer += text;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (!greeted) {
          greeted = true;
        } else if (!('event' in msg)) {
          out.push(msg);
        } else {
          continue;
        }
        sendNext();
      }
    });
  });
}

const WITHOUT_OOB: readonly object[] = [
  { execute: 'query-status', id: 1 },
  { execute: 'qmp_capabilities', arguments: { enable: ['xyz'] }, id: 2 },
  { execute: 'qmp_capabilities', id: 3 },
  { execute: 'qmp_capabilities', id: 4 },
  { 'exec-oob': 'migrate-pause', id: 5 },
  { execute: 'no-such-command', id: 'x' },
  { id: 6 },
  { execute: 'query-status' },
];

const WITH_OOB: readonly object[] = [
  { execute: 'qmp_capabilities', arguments: { enable: ['oob'] }, id: 1 },
  { 'exec-oob': 'query-status', id: 2 },
  { 'exec-oob': 'no-such-command', id: 3 },
];

async function compare(t: import('ava').ExecutionContext, script: readonly object[]): Promise<void> {
  const fake = await FakeQmpPeer.listen({ handlers: { 'query-status': () => ({ status: 'prelaunch', singlestep: false, running: false }) } });
  const real = await startTestQemu();
  try {
    const fromFake = await replies(fake.path, script);
    const fromQemu = await replies(real.socketPath, script);
    t.deepEqual(fromFake, fromQemu);
    t.is(fromQemu.length, script.length);
  } finally {
    await fake.close();
    await real.stop();
  }
}

test.before('qemu-system-x86_64 is installed (Debian package qemu-system-x86)', (t) => {
  t.true(qemuAvailable(), 'install qemu-system-x86 to run these tests');
});

test.serial('the fake peer answers negotiation mistakes, unknown commands and a refused exec-oob as QEMU 7.2 does', async (t) => {
  await compare(t, WITHOUT_OOB);
});

test.serial('the fake peer answers exec-oob of a command without allow-oob as QEMU 7.2 does', async (t) => {
  await compare(t, WITH_OOB);
});
