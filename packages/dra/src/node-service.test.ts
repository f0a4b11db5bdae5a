// Prepare's all-or-nothing rule across a claim's groups, on a fixture host
// whose kernel refuses one write. The claim comes from a stand-in for the
// API server's GET (the end-to-end cases read real claims).
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileBindingStore } from '@vfiokit/core';
import { createFixtureHost, errnoError } from '@vfiokit/testkit';
import { Checkpoint } from './checkpoint';
import type { KubeClient } from './kube';
import { NodeService } from './node-service';

function claimServer(results: { device: string; pool?: string }[]): KubeClient {
  return {
    request: async () => ({
      status: 200,
      body: {
        metadata: { uid: 'uid-1' },
        status: { allocation: { devices: { results: results.map((r, i) => ({ request: `r${i}`, driver: 'vfiokit.dev', pool: r.pool ?? 'n1', device: r.device })) } } },
      },
    }),
  } as unknown as KubeClient;
}

function setup(t: { teardown(fn: () => void): void }, results: { device: string; pool?: string }[]) {
  const host = createFixtureHost('dra-node');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  const checkpoint = new Checkpoint(path.join(host.root, 'plugin', 'checkpoint.json'));
  const service = new NodeService({
    host: host.fs, store: fileBindingStore(path.join(host.root, 'run', 'vfiokit')), checkpoint,
    client: claimServer(results), driverName: 'vfiokit.dev', nodeName: 'n1', cdiDir: path.join(host.root, 'cdi'),
  });
  return { host, checkpoint, service };
}

const claim = { namespace: 'ns', uid: 'uid-1', name: 'c' };

test('a claim of two groups whose second bind fails leaves both groups as they were and records nothing', async (t) => {
  const { host, checkpoint, service } = setup(t, [{ device: 'group-2' }, { device: 'group-3' }]);
  const before = host.deviceStates();
  // The move of the group's second function fails once; putting it back works.
  let failed = false;
  host.onWrite((file, data) => {
    if (!failed && file === '/sys/bus/pci/drivers_probe' && data === '0000:65:00.1') {
      failed = true;
      throw errnoError('ENOMEM', file, 'probe ran out of memory');
    }
  });
  const answer = (await service.prepare([claim]))['uid-1']!;
  t.regex(answer.error, /preparing ns\/c failed: .*0000:65:00\.1.*group 2 put back/);
  t.deepEqual(answer.devices, []);
  t.deepEqual(host.deviceStates(), before);
  t.deepEqual(checkpoint.list(), []);
  t.deepEqual(fs.existsSync(path.join(host.root, 'cdi')) ? fs.readdirSync(path.join(host.root, 'cdi')) : [], []);
});

test('a claim of two groups is prepared whole, answered per request, and released whole', async (t) => {
  const { host, checkpoint, service } = setup(t, [{ device: 'group-2' }, { device: 'group-3' }]);
  const answer = (await service.prepare([claim]))['uid-1']!;
  t.is(answer.error, '');
  t.deepEqual(answer.devices.map((d) => [d.requestNames, d.deviceName]), [[['r0'], 'group-2'], [['r1'], 'group-3']]);
  t.deepEqual(['0000:17:00.0', '0000:65:00.0', '0000:65:00.1'].map((a) => host.deviceStates()[a]!.driver), ['vfio-pci', 'vfio-pci', 'vfio-pci']);
  t.deepEqual(checkpoint.get('uid-1')?.groups, [2, 3]);
  t.deepEqual(await service.unprepare([claim]), { 'uid-1': { error: '' } });
  t.deepEqual(['0000:17:00.0', '0000:65:00.0', '0000:65:00.1'].map((a) => host.deviceStates()[a]!.driver), ['nouveau', 'nouveau', 'snd_hda_intel']);
  t.deepEqual(await service.unprepare([{ ...claim, uid: 'never-seen' }]), { 'never-seen': { error: '' } });
});

test('a device the driver never publishes, or a withheld group, is the claim\'s error and changes nothing', async (t) => {
  for (const [device, message] of [['gpu-0', /never published/], ['group-8', /root filesystem/], ['group-4', /SR-IOV/]] as const) {
    const { host, checkpoint, service } = setup(t, [{ device }]);
    const before = host.deviceStates();
    t.regex((await service.prepare([claim]))['uid-1']!.error, message);
    t.deepEqual(host.deviceStates(), before);
    t.deepEqual(checkpoint.list(), []);
  }
});
