import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { createFixtureHost } from '@vfiokit/testkit';
import { discoverHost, type HostModel } from '../host/index';
import { chooseBackend, versionAtLeast, type VmmCapabilities } from './backend';

const qemu = (v: string) => (): VmmCapabilities => ({ qemuVersion: v, probedWith: 'qemu-system-x86_64 --version' });
/** The model of a fixture host, its folder removed once read. */
function model(name: string): HostModel {
  const h = createFixtureHost(name);
  try {
    return discoverHost(h.fs);
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
}
const iommufdHost = (): HostModel => model('iommufd-workstation');

test('an iommufd host with QEMU 8.2 or newer gets iommufd, with the evidence', (t) => {
  const c = chooseBackend(iommufdHost(), 'q35', qemu('10.0'));
  t.is(c.backend, 'iommufd');
  t.deepEqual(c.reasons, ['/dev/iommu and VFIO device cdevs (/proc/devices lists vfio-dev)', 'QEMU 10.0 (qemu-system-x86_64 --version) has -object iommufd']);
  t.is(chooseBackend(iommufdHost(), 'q35', qemu('8.2')).backend, 'iommufd');
});

test('QEMU 7.2 on an iommufd host keeps the container and says QEMU is too old', (t) => {
  t.deepEqual(chooseBackend(iommufdHost(), 'q35', qemu('7.2')), {
    backend: 'container',
    reasons: ['QEMU 7.2 (qemu-system-x86_64 --version) is too old: -object iommufd came in QEMU 8.2'],
  });
});

test('a QEMU that cannot be asked keeps the container and names what was asked', (t) => {
  const c = chooseBackend(iommufdHost(), 'q35', () => ({ probedWith: '/x/qemu --version', probeError: '/x/qemu is not installed or not on PATH' }));
  t.is(c.backend, 'container');
  t.regex(c.reasons[0]!, /\/x\/qemu --version: \/x\/qemu is not installed/);
});

test('a host without /dev/iommu keeps the container without asking QEMU', (t) => {
  const c = chooseBackend(model('workstation'), 'q35', () => t.fail('QEMU was asked') as never);
  t.is(c.backend, 'container');
  t.regex(c.reasons[0]!, /^no \/dev\/iommu: the kernel has no CONFIG_IOMMUFD/);
});

test('an iommufd kernel without VFIO device cdevs keeps the container and says so', (t) => {
  const host = createFixtureHost('iommufd-workstation');
  let c;
  try {
    writeFileSync(join(host.root, 'proc/devices'), 'Character devices:\n 10 misc\n249 vfio\n');
    c = chooseBackend(discoverHost(host.fs), 'q35', qemu('10.0'));
  } finally {
    rmSync(host.root, { recursive: true, force: true });
  }
  t.deepEqual(c, { backend: 'container', reasons: ['no VFIO device cdevs: the kernel has no CONFIG_VFIO_DEVICE_CDEV (/proc/devices lists no vfio-dev char device)'] });
});

test('a pseries guest keeps the container whatever the host offers', (t) => {
  const c = chooseBackend(iommufdHost(), 'pseries', qemu('10.0'));
  t.is(c.backend, 'container');
  t.regex(c.reasons[0]!, /sPAPR TCE/);
});

test('versions compare by major, then minor', (t) => {
  t.true(versionAtLeast('8.2', '8.2'));
  t.true(versionAtLeast('10.0', '8.2'));
  t.false(versionAtLeast('8.1', '8.2'));
  t.false(versionAtLeast('7.2', '8.2'));
});
