import test from 'ava';
import { spawnSync } from 'node:child_process';
import { initScript, packInitramfs } from './initramfs';

const spec = {
  busybox: '/bin/busybox',
  modules: [
    { name: 'vfio', path: 'kernel/drivers/vfio/vfio.ko', object: Buffer.alloc(0) },
    { name: 'vfio_iommu_type1', path: 'kernel/drivers/vfio/vfio_iommu_type1.ko', object: Buffer.alloc(0) },
  ],
  moduleParams: { vfio_iommu_type1: 'dma_entry_limit=4096' },
  bindToVfio: ['0000:00:03.0'],
  repoRoot: "/tmp/it's here",
};

test('modules are loaded in the given order, each with its parameters', (t) => {
  const s = initScript(spec);
  const vfio = s.indexOf("load '/lib/modules/kernel/drivers/vfio/vfio.ko'\n");
  const type1 = s.indexOf("load '/lib/modules/kernel/drivers/vfio/vfio_iommu_type1.ko' dma_entry_limit=4096\n");
  t.true(vfio > 0 && type1 > vfio);
});

test('each device to hand over is bound through driver_override and drivers_probe', (t) => {
  const s = initScript(spec);
  t.true(s.includes('bind_vfio 0000:00:03.0\n'));
  t.true(s.includes('echo vfio-pci > $d/driver_override'));
  t.true(s.includes('echo $1 > /sys/bus/pci/drivers_probe'));
});

test('the repository path is quoted for the shell and its mount point created', (t) => {
  const s = initScript(spec);
  t.true(s.includes("mkdir -p /host'/tmp/it'\\''s here'\n"));
});

test('the script powers the guest off at the end and on any setup failure', (t) => {
  const s = initScript(spec);
  t.true(s.includes('fail() { mark "fail=$*"; sync; poweroff -f;'));
  t.true(s.trimEnd().endsWith('poweroff -f\nsleep 10'));
});

test('an initramfs holds busybox, the extra files, init and each module under its own directories', (t) => {
  const archive = packInitramfs({
    busybox: Buffer.from('bb'),
    init: '#!/bin/busybox sh\n',
    modules: spec.modules,
    files: [{ kind: 'file', path: 'bin/vfio-lab', data: Buffer.from('lab'), mode: 0o755 }],
  });
  const res = spawnSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' });
  t.is(res.status, 0, res.stderr);
  t.deepEqual(res.stdout.trim().split('\n'), [
    'bin',
    'dev',
    'dev/console',
    'bin/busybox',
    'bin/vfio-lab',
    'init',
    'lib',
    'lib/modules',
    'lib/modules/kernel',
    'lib/modules/kernel/drivers',
    'lib/modules/kernel/drivers/vfio',
    'lib/modules/kernel/drivers/vfio/vfio.ko',
    'lib/modules/kernel/drivers/vfio/vfio_iommu_type1.ko',
  ]);
});
