import test from 'ava';
import * as fs from 'node:fs';
import { createFixtureHost, createFixtureHostFromSpec, manyGroupsSpec } from '@vfiokit/testkit';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_ATTRIBUTES, takeInventory } from './inventory';
import { buildSlices, MAX_DEVICES_PER_SLICE } from './slices';

test('dra-node offers the groups managed bind would take and withholds the rest with the reason', (t) => {
  const host = createFixtureHost('dra-node');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  const inv = takeInventory(host.fs);
  t.deepEqual(inv.offers.map((o) => o.group), [2, 3, 5, 6, 7]);
  const why = Object.fromEntries(inv.withheld.map((w) => [w.group, w.reason]));
  t.regex(why[0]!, /chipset's host bridge/);
  t.regex(why[1]!, /only bridges/);
  t.regex(why[4]!, /SR-IOV physical function with 2 VFs enabled/);
  t.regex(why[8]!, /root filesystem/);
  t.regex(why[9]!, /default route/);
  for (const o of inv.offers) t.true(Object.keys(o.attributes).length <= MAX_ATTRIBUTES);
});

test('a group held open is withheld unless this driver prepared it', (t) => {
  const host = createFixtureHost('dra-node');
  t.teardown(() => fs.rmSync(host.root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(host.root, 'proc', '77', 'fd'), { recursive: true });
  fs.symlinkSync('/dev/vfio/7', path.join(host.root, 'proc', '77', 'fd', '3'));
  t.false(takeInventory(host.fs).offers.some((o) => o.group === 7));
  t.regex(takeInventory(host.fs).withheld.find((w) => w.group === 7)!.reason, /in use: \/dev\/vfio\/7 is open in pid 77/);
  t.true(takeInventory(host.fs, { prepared: new Set([7]) }).offers.some((o) => o.group === 7));
});

test('256 groups go into two slices of one pool generation, at most 128 devices each', (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-many-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const host = createFixtureHostFromSpec(manyGroupsSpec(256), root);
  const offers = takeInventory(host.fs).offers;
  t.is(offers.length, 256);
  const slices = buildSlices({ driverName: 'vfiokit.dev', nodeName: 'n1', nodeUid: 'u' }, offers, 7);
  t.deepEqual(slices.map((s) => s.spec.devices.length), [MAX_DEVICES_PER_SLICE, 256 - MAX_DEVICES_PER_SLICE]);
  t.deepEqual(slices.map((s) => s.spec.pool), [{ name: 'n1', generation: 7, resourceSliceCount: 2 }, { name: 'n1', generation: 7, resourceSliceCount: 2 }]);
  t.deepEqual(buildSlices({ driverName: 'vfiokit.dev', nodeName: 'n1', nodeUid: 'u' }, [], 1).map((s) => s.spec.devices), [[]]);
});
