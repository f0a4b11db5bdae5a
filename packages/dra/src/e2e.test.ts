// The DRA driver against a real kube-apiserver and kube-scheduler, with the
// kubelet played by kubelet-sim (Kubernetes' own generated gRPC clients), on
// the simulated host dra-node. One control plane serves every case; each case
// leaves the node as it found it.
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DraLab, DRIVER, exitOf, NODE, waitFor } from './testing/harness';

let lab: DraLab;

// Each case gets its own limit, under ava's inactivity timeout: a case that
// stalls (a watch that never fires, a plugin that never answers) then fails
// by name instead of ending the whole file at the inactivity limit.
const CASE_LIMIT_MS = 240_000;
const e2e = (title: string, body: (t: ExecutionContext) => Promise<void>) =>
  test(title, async (t) => {
    t.timeout(CASE_LIMIT_MS, `${title}: no end within ${CASE_LIMIT_MS / 1000} s`);
    await body(t);
  });

test.before(async (t) => {
  // Starting etcd, kube-apiserver and kube-scheduler takes a minute when warm
  // and several on a loaded 2-core machine.
  t.timeout(480_000, 'the control plane and the plugin did not come up within 480 s');
  lab = await DraLab.start();
  await lab.startPlugin();
});

test.after.always(async () => {
  await lab?.stop();
});

e2e('slices publish exactly the viable groups of the node, with the attributes a selector needs', async (t) => {
  const devices = await waitFor('the slices', async () => {
    const d = await lab.publishedDevices();
    return d.size > 0 ? d : undefined;
  });
  t.deepEqual([...devices.keys()].sort(), ['group-2', 'group-3', 'group-5', 'group-6', 'group-7']);
  const gpuAudio = devices.get('group-3').attributes;
  t.deepEqual(gpuAudio.group, { int: 3 });
  t.deepEqual(gpuAudio.functions, { int: 2 });
  t.deepEqual(gpuAudio.fn0_address, { string: '0000:65:00.0' });
  t.deepEqual(gpuAudio.fn1_address, { string: '0000:65:00.1' });
  t.deepEqual(gpuAudio.fn1_class, { string: '040300' });
  t.deepEqual(gpuAudio.vendor, { string: '10de' });
  t.deepEqual(gpuAudio.numaNode, { int: 1 });
  t.deepEqual(gpuAudio.iommu, { string: 'type1' });
  t.deepEqual(gpuAudio.pageSizes, { string: '4KiB,2MiB,1GiB' });
  t.deepEqual(gpuAudio.iovaBits, { int: 48 });
  t.deepEqual(gpuAudio.hasBridge, { bool: false });
  const { body } = await lab.cluster.api('GET', `/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName=${NODE}`);
  const slice = body.items[0];
  t.is(slice.spec.pool.name, NODE);
  t.is(slice.spec.pool.resourceSliceCount, 1);
  t.is(slice.metadata.ownerReferences[0].kind, 'Node');
});

e2e('a CEL selector on the vendor id gets the one group of that vendor', async (t) => {
  await lab.claimAndPod('samsung', 'device.attributes["vfiokit.dev"].vendor == "144d"');
  const claim = await lab.scheduledClaim('samsung');
  t.deepEqual(claim.devices, [`${DRIVER}/${NODE}/group-7`]);
  await lab.deletePodAndClaim('samsung');
});

e2e('the example claim is scheduled; prepare moves the whole group to vfio-pci and the CDI spec names its nodes; unprepare restores the drivers', async (t) => {
  await lab.apply(path.join(__dirname, '..', 'examples', 'resourceclaim.yaml'));
  const claim = await lab.scheduledClaim('vm-with-t4', 'tesla-t4');
  t.deepEqual(claim.devices, [`${DRIVER}/${NODE}/group-2`]);
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'nouveau');

  const prepared = await lab.kubelet.prepare(lab.endpoint, [claim.ref]);
  t.true(prepared.ok, prepared.error);
  const answer = prepared.claims![claim.ref.uid]!;
  t.is(answer.error, '');
  t.deepEqual(answer.devices, [{ requestNames: ['gpu'], poolName: NODE, deviceName: 'group-2', cdiDeviceIds: [`${DRIVER}/group=${claim.ref.uid}-2`] }]);
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'vfio-pci');
  const spec = JSON.parse(fs.readFileSync(path.join(lab.cdiDir, `${DRIVER}-${claim.ref.uid}.json`), 'utf8'));
  t.is(spec.kind, `${DRIVER}/group`);
  t.deepEqual(spec.devices[0].containerEdits.deviceNodes, [{ path: '/dev/vfio/vfio' }, { path: '/dev/vfio/2' }]);
  t.deepEqual(spec.containerEdits.env, ['PCI_RESOURCE_VFIOKIT_DEV_GROUP=0000:17:00.0']);

  // The kubelet retries: the same answer, nothing moved again.
  const again = await lab.kubelet.prepare(lab.endpoint, [claim.ref]);
  t.deepEqual(again.claims![claim.ref.uid], answer);

  await lab.deletePodAndClaim('vm-with-t4', 'tesla-t4');
  const released = await lab.kubelet.unprepare(lab.endpoint, [claim.ref]);
  t.deepEqual(released.claims, { [claim.ref.uid]: { error: '' } });
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'nouveau');
  t.false(fs.existsSync(path.join(lab.cdiDir, `${DRIVER}-${claim.ref.uid}.json`)));
  const twice = await lab.kubelet.unprepare(lab.endpoint, [claim.ref]);
  t.deepEqual(twice.claims, { [claim.ref.uid]: { error: '' } });
});

e2e('two claims on the two functions of one group: the first gets the whole group, the second waits until it is released', async (t) => {
  await lab.claimAndPod('gpu-fn0', 'device.attributes["vfiokit.dev"].?fn0_address.orValue("") == "0000:65:00.0"');
  const first = await lab.scheduledClaim('gpu-fn0');
  t.deepEqual(first.devices, [`${DRIVER}/${NODE}/group-3`]);
  await lab.claimAndPod('gpu-fn1', 'device.attributes["vfiokit.dev"].?fn1_address.orValue("") == "0000:65:00.1"');
  const why = await waitFor('the second pod to be reported unschedulable', async () => {
    const c = (await lab.pod('gpu-fn1')).status?.conditions?.find((x: any) => x.type === 'PodScheduled');
    return c?.status === 'False' && c.reason === 'Unschedulable' ? c.message : undefined;
  }).catch(async (err) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify((await lab.pod('gpu-fn1')).status)}; ${lab.schedulerLog().slice(-1500)}`);
  });
  t.regex(why, /cannot allocate all claims|resourceclaim/i);
  t.is((await lab.pod('gpu-fn1')).spec.nodeName, undefined);

  const prepared = await lab.kubelet.prepare(lab.endpoint, [first.ref]);
  t.is(prepared.claims![first.ref.uid]!.error, '');
  const states = lab.host().deviceStates();
  t.is(states['0000:65:00.0']!.driver, 'vfio-pci');
  t.is(states['0000:65:00.1']!.driver, 'vfio-pci');

  // Even an allocation the scheduler would never make does not get the group twice.
  const forged = await lab.forgedClaim('forged-fn1', NODE, 'group-3');
  const refused = await lab.kubelet.prepare(lab.endpoint, [forged]);
  t.regex(refused.claims![forged.uid]!.error, /IOMMU group 3 is already prepared for claim default\/gpu-fn0/);
  t.deepEqual(refused.claims![forged.uid]!.devices ?? [], []);
  t.deepEqual(Object.keys(lab.checkpoint().claims), [first.ref.uid]);

  await lab.deletePodAndClaim('gpu-fn0');
  t.deepEqual((await lab.kubelet.unprepare(lab.endpoint, [first.ref])).claims, { [first.ref.uid]: { error: '' } });
  t.is(lab.host().deviceStates()['0000:65:00.0']!.driver, 'nouveau');
  t.is(lab.host().deviceStates()['0000:65:00.1']!.driver, 'snd_hda_intel');
  // Released, the group goes to the claim that waited.
  const second = await lab.scheduledClaim('gpu-fn1');
  t.deepEqual(second.devices, [`${DRIVER}/${NODE}/group-3`]);
  await lab.deletePodAndClaim('gpu-fn1');
  await lab.releaseClaim('forged-fn1');
});

e2e('a plugin SIGKILLed between bind and answer, restarted: the retry succeeds once, SIGTERM withdraws the slices and keeps the claim, unprepare restores', async (t) => {
  await lab.claimAndPod('crash', 'device.attributes["vfiokit.dev"].device == "1eb8"');
  const claim = await lab.scheduledClaim('crash');
  t.deepEqual(claim.devices, [`${DRIVER}/${NODE}/group-2`]);
  await lab.stopPlugin();

  const doomed = await lab.startPlugin({ VFIOKIT_DRA_FAULT: 'kill-after-bind' });
  const lost = await lab.kubelet.prepare(lab.endpoint, [claim.ref]);
  t.false(lost.ok);
  t.is((await exitOf(doomed, 'the plugin told to kill itself after bind')).signal, 'SIGKILL');
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'vfio-pci');
  t.is(lab.checkpoint().claims[claim.ref.uid].state, 'preparing');

  await lab.startPlugin();
  const retry = await lab.kubelet.prepare(lab.endpoint, [claim.ref]);
  t.is(retry.claims![claim.ref.uid]!.error, '');
  t.deepEqual(retry.claims![claim.ref.uid]!.devices!.map((d) => d.deviceName), ['group-2']);
  t.deepEqual(lab.bindingRecords(), ['0000:17:00.0.json']);
  const record = JSON.parse(fs.readFileSync(path.join(lab.hostDir, 'run', 'vfiokit', 'devices', '0000:17:00.0.json'), 'utf8'));
  t.is(record.originalDriver, 'nouveau');
  t.is(lab.checkpoint().claims[claim.ref.uid].state, 'prepared');
  const forged = await lab.forgedClaim('crash-twin', NODE, 'group-2');
  t.regex((await lab.kubelet.prepare(lab.endpoint, [forged])).claims![forged.uid]!.error, /group 2 is already prepared for claim default\/crash/);

  // A clean stop: slices withdrawn, the prepared claim kept.
  const running = lab.plugin!;
  running.child.kill('SIGTERM');
  t.deepEqual(await exitOf(running, 'the plugin sent SIGTERM'), { code: 0, signal: null }, running.output());
  t.is((await lab.publishedDevices()).size, 0);
  t.is(lab.checkpoint().claims[claim.ref.uid].state, 'prepared');
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'vfio-pci');

  await lab.startPlugin();
  await lab.deletePodAndClaim('crash');
  t.deepEqual((await lab.kubelet.unprepare(lab.endpoint, [claim.ref])).claims, { [claim.ref.uid]: { error: '' } });
  t.is(lab.host().deviceStates()['0000:17:00.0']!.driver, 'nouveau');
  t.deepEqual(lab.bindingRecords(), []);
  t.deepEqual(lab.checkpoint().claims, {});
  await lab.releaseClaim('crash-twin');
});

e2e('a claim allocated from another node, a bad kubeconfig and an unreachable API server give clear errors and change nothing', async (t) => {
  const before = lab.host().deviceStates();
  const elsewhere = await lab.forgedClaim('elsewhere', 'worker-2', 'group-2');
  const answer = (await lab.kubelet.prepare(lab.endpoint, [elsewhere])).claims![elsewhere.uid]!;
  t.regex(answer.error, /allocated group-2 from pool worker-2, not from this node worker-1/);
  t.deepEqual(lab.host().deviceStates(), before);
  t.deepEqual(lab.checkpoint().claims, {});
  await lab.releaseClaim('elsewhere');

  const aside = (name: string) => ['--plugin-dir', path.join(lab.dir, name, 'plugin'), '--registry-dir', path.join(lab.dir, name, 'registry')];
  const missing = lab.spawnPlugin({}, aside('bad'), path.join(lab.dir, 'no-such.kubeconfig'));
  t.is((await exitOf(missing, 'the plugin with a missing kubeconfig')).code, 4);
  t.regex(missing.output(), /kubeconfig .*no-such\.kubeconfig cannot be read/);
  const { freePort } = await import('@vfiokit/testkit');
  const dead = lab.cluster.writeKubeconfig('dead.kubeconfig', { server: `https://127.0.0.1:${await freePort()}` });
  const unreachable = lab.spawnPlugin({}, aside('dead'), dead);
  t.is((await exitOf(unreachable, 'the plugin with an unreachable API server')).code, 8);
  t.regex(unreachable.output(), /API server https:\/\/127\.0\.0\.1:\d+ .*cannot be reached.*ECONNREFUSED/);
  t.false(fs.existsSync(path.join(lab.dir, 'bad')));
  t.false(fs.existsSync(path.join(lab.dir, 'dead')));
  t.deepEqual(lab.host().deviceStates(), before);
});

e2e('a group someone opens behind the driver leaves the slice with the reason shown, and comes back; an unplugged device leaves it too', async (t) => {
  const proc = path.join(lab.hostDir, 'proc', '4242');
  fs.mkdirSync(path.join(proc, 'fd'), { recursive: true });
  fs.writeFileSync(path.join(proc, 'comm'), 'qemu-system-x86\n');
  fs.symlinkSync('/dev/vfio/6', path.join(proc, 'fd', '23'));
  await waitFor('group-6 to leave the slice', async () => ((await lab.publishedDevices()).has('group-6') ? undefined : true), 30000);
  const { execFileSync } = await import('node:child_process');
  const { CLI } = await import('./testing/harness');
  const status = JSON.parse(execFileSync(process.execPath, [CLI, '--mock', 'dra-node', '--mock-dir', lab.hostDir, '--json', 'dra', 'status', '--plugin-dir', lab.pluginDir], { encoding: 'utf8' }));
  t.regex(status.inventory.withheld.find((w: any) => w.group === 6).reason, /group 6 is in use: \/dev\/vfio\/6 is open in qemu-system-x86 \(pid 4242\)/);
  t.is(status.driver.nodeName, NODE);
  fs.rmSync(proc, { recursive: true });
  await waitFor('group-6 to come back', async () => ((await lab.publishedDevices()).has('group-6') ? true : undefined), 30000);

  lab.host().removeDevice('0000:c1:00.0');
  await waitFor('group-7 to leave the slice', async () => ((await lab.publishedDevices()).has('group-7') ? undefined : true), 30000);
  t.deepEqual([...(await lab.publishedDevices()).keys()].sort(), ['group-2', 'group-3', 'group-5', 'group-6']);
});
