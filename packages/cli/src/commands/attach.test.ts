import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startTestQemu, testNeedingQemu } from '@vfiokit/testkit';
import { EXAMPLES, vfiokit } from '../testing/run-cli';

const qemuTest = testNeedingQemu(test);

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-attach-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A UNIX socket that accepts connections and never says a word: a hung QEMU. */
async function silentSocket(t: { teardown(fn: () => void): void }): Promise<string> {
  const path = join(tempDir(t), 'silent.sock');
  const held: Socket[] = [];
  const server: Server = createServer((s) => held.push(s));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  return path;
}

test('attach to a QMP socket that never answers gives up after --timeout with exit 7', async (t) => {
  const socket = await silentSocket(t);
  const dir = tempDir(t);
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = await vfiokit([...host, 'attach', '--qmp', socket, '--timeout', '0.5', '04:00.0']);
  t.is(run.code, 7);
  t.is(
    run.stderr,
    `vfiokit: no QMP greeting from QEMU monitor at unix:${socket} within 500 ms; a QEMU monitor serves one client ` +
      'at a time and greets the next only when the current one disconnects: check that no other client ' +
      '(libvirt, another vfiokit) holds it\n',
  );
});

test('attach to a socket path where nothing listens exits 7 saying how to start QEMU', async (t) => {
  const path = join(tempDir(t), 'none.sock');
  const run = await vfiokit(['detach', '--qmp', path, 'hostdev-0000-04-00-0']);
  t.is(run.code, 7);
  t.true(run.stderr.includes(`no socket exists there: start QEMU with -qmp unix:${path},server=on,wait=off`));
});

test('attach of a group that is not on vfio-pci is refused before QEMU is asked', async (t) => {
  const socket = await silentSocket(t);
  const run = await vfiokit(['--mock', 'workstation', 'attach', '--qmp', socket, '04:00.0']);
  t.is(run.code, 5);
  t.is(run.stderr, "vfiokit: group 11 is not viable: 0000:04:00.0 is bound to xhci_hcd; run 'vfiokit bind 0000:04:00.0' to move the whole group to vfio-pci\nhint: vfiokit bind 11\n");
});

test('attach --qmp is required', async (t) => {
  const run = await vfiokit(['attach', '04:00.0']);
  t.is(run.code, 2);
  t.regex(run.stderr, /required option '--qmp <socket>' not specified/);
});

qemuTest('attach into a real QEMU reports the error QEMU gives for a device this host does not have', async (t) => {
  const qemu = await startTestQemu({ args: ['-device', 'pcie-root-port,id=rp1,chassis=1'] });
  t.teardown(() => qemu.stop());
  const dir = tempDir(t);
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = await vfiokit([...host, 'attach', '--qmp', qemu.socketPath, '04:00.0']);
  t.is(run.code, 7);
  t.regex(run.stderr, /^vfiokit: device_add of hostdev-0000-04-00-0 failed: vfio .*0000:04:00\.0: no such host device/);
});

qemuTest('detach of a device no guest releases ends with exit 7 after the timeout, not a hang', async (t) => {
  const qemu = await startTestQemu({ args: ['-device', 'pcie-root-port,id=rp1,chassis=1', '-device', 'virtio-rng-pci,id=rng0,bus=rp1'] });
  t.teardown(() => qemu.stop());
  const run = await vfiokit(['detach', '--qmp', qemu.socketPath, '--timeout', '1', 'rng0']);
  t.is(run.code, 7);
  t.regex(run.stderr, /^vfiokit: device_del of rng0 was accepted, but the guest did not release it within 1000 ms/);
});

qemuTest('attach of a guest spec hot-plugs the groups its plan assigns', async (t) => {
  const qemu = await startTestQemu({ args: ['-device', 'pcie-root-port,id=rp1,chassis=1'] });
  t.teardown(() => qemu.stop());
  const dir = tempDir(t);
  const host = ['--mock', 'workstation', '--mock-dir', dir];
  t.is((await vfiokit([...host, 'bind', '04:00.0'])).code, 0);
  const run = await vfiokit([...host, 'attach', '--qmp', qemu.socketPath, join(EXAMPLES, 'usb-controller.yaml')]);
  // The simulated device is not on this machine: QEMU's refusal proves the planned group was the one asked for.
  t.is(run.code, 7);
  t.regex(run.stderr, /^vfiokit: device_add of hostdev-0000-04-00-0 failed/);
});
