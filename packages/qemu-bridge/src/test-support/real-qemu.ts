// Shared by the tests that drive a real QEMU (x86 and pseries): start it
// through testkit, connect once it listens, and always stop both.
import { startTestQemu, type TestQemu, type TestQemuOptions } from '@vfiokit/testkit';
import { QmpConnectError } from '../errors';
import type { QmpSession } from '../qmp/protocol';
import { connectQmp } from '../qmp/transport';

export async function withTestQemu(
  options: TestQemuOptions,
  body: (qmp: QmpSession, qemu: TestQemu) => Promise<void>,
): Promise<void> {
  const qemu = await startTestQemu(options);
  try {
    const qmp = await connectWhenListening(qemu);
    try {
      await body(qmp, qemu);
    } finally {
      await qmp.close();
    }
  } finally {
    await qemu.stop();
  }
}

/** QEMU binds its socket a moment before it listens: retry a refused connect briefly. */
export async function connectWhenListening(qemu: TestQemu): Promise<QmpSession> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connectQmp(qemu.address, { commandTimeoutMs: 20_000, greetingTimeoutMs: 20_000 });
    } catch (err) {
      if (!(err instanceof QmpConnectError) || attempt >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
