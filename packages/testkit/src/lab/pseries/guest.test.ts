import test from 'ava';
import { eduBdf, eduBdfs, initScript, qemuArgs, readMarks, TOPOLOGIES } from './guest';

const paths = { vmlinux: '/k/vmlinux', initramfs: '/o/i.cpio', results: '/o/r.jsonl' };

test('the edu on PHB n is in PCI domain n', (t) => {
  t.deepEqual([eduBdf(0), eduBdf(1), eduBdf(16)], ['0000:00:02.0', '0001:00:02.0', '0010:00:02.0']);
});

test('one PHB boots with no extra host bridge', (t) => {
  const args = qemuArgs({ name: 'one-phb', phbs: 1 }, paths);
  t.false(args.some((a) => a.startsWith('spapr-pci-host-bridge')));
  t.is(args.filter((a) => a.startsWith('edu,')).length, 1);
});

test('two PHBs add one spapr-pci-host-bridge with its own edu', (t) => {
  const args = qemuArgs({ name: 'two-phbs', phbs: 2 }, paths);
  t.true(args.includes('spapr-pci-host-bridge,index=1,id=phb1'));
  t.true(args.includes('edu,bus=phb1.0,addr=2,dma_mask=0xffffffffffffffff'));
});

test('results leave the guest on a second spapr-vty backed by the results file', (t) => {
  const args = qemuArgs(TOPOLOGIES[0]!, paths);
  t.true(args.includes('file,id=results,path=/o/r.jsonl'));
  t.true(args.includes('spapr-vty,chardev=results'));
});

test('the init script binds the edu of every PHB and writes results to hvc1', (t) => {
  const script = initScript([], { name: 'two-phbs', phbs: 2 });
  t.true(script.includes('bind_vfio 0000:00:02.0\nbind_vfio 0001:00:02.0'));
  t.true(script.includes('/bin/vfio-lab spapr --backend kernel --phbs 2 --out /dev/hvc1'));
});

test('the marks say how far the guest got and what it bound', (t) => {
  const m = readMarks('vfiokit-pseries: stage=bind\nvfiokit-pseries: bound=0000:00:02.0 group=0\nvfiokit-pseries: stage=run\nvfiokit-pseries: done');
  t.deepEqual(m, { reachedRun: true, done: true, bound: ['bound=0000:00:02.0 group=0'], lastStage: 'run' });
});

test('a setup failure mark is reported with its reason', (t) => {
  t.is(readMarks('vfiokit-pseries: fail=insmod vfio failed').failure, 'insmod vfio failed');
});

test('two functions put two edus at slot 2 of the first PHB, function 0 multifunction, and bind both', (t) => {
  const topology = { name: 'two-functions', phbs: 1, functions: 2 };
  const args = qemuArgs(topology, paths);
  t.deepEqual(
    args.filter((a) => a.startsWith('edu,')),
    ['edu,bus=pci.0,addr=2.0,multifunction=on,dma_mask=0xffffffffffffffff', 'edu,bus=pci.0,addr=2.1,dma_mask=0xffffffffffffffff'],
  );
  t.deepEqual(eduBdfs(topology), ['0000:00:02.0', '0000:00:02.1']);
  const script = initScript([], topology);
  t.true(script.includes('bind_vfio 0000:00:02.0\nbind_vfio 0000:00:02.1'));
  t.true(script.includes('/bin/vfio-lab spapr --backend kernel --phbs 1 --functions 2 --out /dev/hvc1'));
});
