import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { temporaryFixtureDir } from '@vfiokit/testkit';
import { fileBindingStore } from './state';

const tmp = () => temporaryFixtureDir('vfiokit-state-');
const record = { address: '0000:04:00.0', vendorId: 0x1b21, deviceId: 0x2142, originalDriver: 'xhci_hcd', group: 11, movedAt: '2026-11-25T00:00:00.000Z' };

test('a record written is read back', (t) => {
  const store = fileBindingStore(tmp());
  store.put(record);
  t.deepEqual(store.get('0000:04:00.0'), record);
});

test('a second store on the same folder sees the record', (t) => {
  const dir = tmp();
  fileBindingStore(dir).put(record);
  t.deepEqual(fileBindingStore(dir).list(), [record]);
});

test('a corrupt record is HOST_STATE with the file to delete', (t) => {
  const dir = tmp();
  fs.mkdirSync(path.join(dir, 'devices'));
  fs.writeFileSync(path.join(dir, 'devices', '0000:04:00.0.json'), '{"address":');
  const err = t.throws(() => fileBindingStore(dir).get('0000:04:00.0')) as { code?: string; hint?: string };
  t.deepEqual([err.code, err.hint], ['HOST_STATE', `check the device by hand, then delete ${path.join(dir, 'devices', '0000:04:00.0.json')}`]);
});

test('the lock is exclusive while held', (t) => {
  const store = fileBindingStore(tmp());
  const release = store.lock();
  // This process is alive, so a second taker waits, then gives up.
  const err = t.throws(() => store.lock(100)) as { code?: string };
  release();
  t.is(err.code, 'HOST_STATE');
});

test('a released lock can be taken again', (t) => {
  const store = fileBindingStore(tmp());
  store.lock()();
  t.notThrows(() => store.lock()());
});

test('a lock left by a dead process is taken over', (t) => {
  const dir = tmp();
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  fs.writeFileSync(path.join(dir, 'lock'), `${dead}\n`);
  t.notThrows(() => fileBindingStore(dir).lock(0)());
});
