// The DRA driver against a real kube-apiserver and kube-scheduler, with the
// kubelet played by kubelet-sim (Kubernetes' own generated gRPC clients), on
// the simulated host dra-node. One control plane serves every case; each case
// leaves the node as it found it.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DraLab, DRIVER, NODE, waitFor } from './testing/harness';

let lab: DraLab;

test.before(async () => {
  lab = await DraLab.start();
  await lab.startPlugin();
});

test.after.always(async () => {
  await lab?.stop();
});

test('slices publish exactly the viable groups of the node, with the attributes a selector needs', async (t) => {
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

test('a CEL selector on the vendor id gets the one group of that vendor', async (t) => {
  await lab.claimAndPod('samsung', 'device.attributes["vfiokit.dev"].vendor == "144d"');
  const claim = await lab.scheduledClaim('samsung');
  t.deepEqual(claim.devices, [`${DRIVER}/${NODE}/group-7`]);
  await lab.deletePodAndClaim('samsung');
});

test('the example claim is scheduled; prepare moves the whole group to vfio-pci and the CDI spec names its nodes; unprepare restores the drivers', async (t) => {
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
