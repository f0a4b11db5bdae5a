import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { temporaryFixtureDir } from '@vfiokit/testkit';
import { createHostFs, resolveLink } from './seam';

const tree = () => {
  const root = temporaryFixtureDir('vfiokit-seam-');
  fs.mkdirSync(path.join(root, 'sys/bus/pci/devices'), { recursive: true });
  fs.mkdirSync(path.join(root, 'sys/devices/pci0000:00/0000:00:03.0'), { recursive: true });
  fs.writeFileSync(path.join(root, 'sys/devices/pci0000:00/0000:00:03.0/driver_override'), '(null)\n');
  fs.symlinkSync('../../../devices/pci0000:00/0000:00:03.0', path.join(root, 'sys/bus/pci/devices/0000:00:03.0'));
  fs.mkdirSync(path.join(root, 'proc'));
  fs.writeFileSync(path.join(root, 'proc/cmdline'), 'ro quiet\n');
  return root;
};

test('paths under /sys and /proc are read below the roots given', (t) => {
  const root = tree();
  const host = createHostFs({ sysfsRoot: path.join(root, 'sys'), procRoot: path.join(root, 'proc') });
  t.deepEqual([host.readText('/proc/cmdline'), host.list('/sys/bus/pci/devices')], ['ro quiet\n', ['0000:00:03.0']]);
});

test('what does not exist reads as undefined or an empty list', (t) => {
  const host = createHostFs({ root: tree() });
  t.deepEqual([host.readText('/sys/nothing'), host.readLink('/proc/cmdline'), host.list('/sys/nothing')], [undefined, undefined, []]);
});

test('a sysfs link resolves against its own folder', (t) => {
  t.is(resolveLink(createHostFs({ root: tree() }), '/sys/bus/pci/devices/0000:00:03.0'), '/sys/devices/pci0000:00/0000:00:03.0');
});

test('a write goes to the attribute that exists', (t) => {
  const root = tree();
  createHostFs({ root }).writeText('/sys/bus/pci/devices/0000:00:03.0/driver_override', 'vfio-pci');
  t.is(fs.readFileSync(path.join(root, 'sys/devices/pci0000:00/0000:00:03.0/driver_override'), 'utf8'), 'vfio-pci');
});

test('a write to an attribute that does not exist is ENOENT and creates nothing', (t) => {
  const root = tree();
  const err = t.throws(() => createHostFs({ root }).writeText('/sys/bus/pci/devices/0000:00:03.0/bind', '1')) as NodeJS.ErrnoException;
  t.deepEqual([err.code, fs.existsSync(path.join(root, 'sys/devices/pci0000:00/0000:00:03.0/bind'))], ['ENOENT', false]);
});

test('a relative host path is refused', (t) => {
  t.throws(() => createHostFs({ root: tree() }).readText('sys/x'), { instanceOf: TypeError });
});
