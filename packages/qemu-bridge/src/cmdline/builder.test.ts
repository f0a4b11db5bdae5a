import test from 'ava';
import { VmDescriptionError } from '../errors';
import { buildCommandLine, formatArgv, requirementsFor, type VmDescription } from './builder';
import { layoutSlots, parseBdf } from './layout';

const base: VmDescription = { machine: 'q35', memoryMiB: 4096, cpus: 4, guestIommu: 'none', devices: [] };

test('a q35 guest without IOMMU puts each host device on its own root port', (t) => {
  const cl = buildCommandLine({
    ...base,
    devices: [
      { host: '0000:01:00.0', group: 12 },
      { host: '0000:02:00.0', group: 13, id: 'nvme0' },
    ],
  });
  t.deepEqual(cl.argv, [
    'qemu-system-x86_64',
    '-machine', 'q35',
    '-accel', 'kvm',
    '-m', '4096M',
    '-smp', '4',
    '-nodefaults',
    '-device', 'pcie-root-port,id=rp0,chassis=1,bus=pcie.0,addr=0x2.0,multifunction=on',
    '-device', 'pcie-root-port,id=rp1,chassis=2,bus=pcie.0,addr=0x2.1',
    '-device', 'vfio-pci,host=0000:01:00.0,id=hostdev-0000-01-00-0,bus=rp0,addr=0x0.0',
    '-device', 'vfio-pci,host=0000:02:00.0,id=nvme0,bus=rp1,addr=0x0.0',
  ]);
});

test('a cpr-ready guest keeps its RAM in a shared memfd named as the machine memory-backend, with aux-ram-share on', (t) => {
  const cl = buildCommandLine({ ...base, guestIommu: 'intel-iommu', cpr: true });
  t.deepEqual(cl.argv.slice(0, 9), [
    'qemu-system-x86_64',
    '-machine', 'q35,kernel-irqchip=split,memory-backend=vfiokit-ram,aux-ram-share=on',
    '-accel', 'kvm',
    '-m', '4096M',
    '-object', 'memory-backend-memfd,id=vfiokit-ram,size=4096M,share=on',
  ]);
});

test('functions of one host device share a root port as a multifunction device', (t) => {
  const cl = buildCommandLine({
    ...base,
    devices: [
      { host: '0000:03:00.1', group: 5 },
      { host: '0000:03:00.0', group: 5 },
    ],
  });
  t.deepEqual(cl.argv.filter((a) => a.startsWith('vfio-pci')), [
    'vfio-pci,host=0000:03:00.0,id=hostdev-0000-03-00-0,bus=rp0,addr=0x0.0,multifunction=on',
    'vfio-pci,host=0000:03:00.1,id=hostdev-0000-03-00-1,bus=rp0,addr=0x0.1',
  ]);
  t.deepEqual(cl.placements.map((p) => [p.id, p.bus, p.function]), [
    ['hostdev-0000-03-00-0', 'rp0', 0],
    ['hostdev-0000-03-00-1', 'rp0', 1],
  ]);
});

test('functions of one host slot in different IOMMU groups get a root port each', (t) => {
  const cl = buildCommandLine({
    ...base,
    devices: [
      { host: '0000:3b:02.0', group: 4 },
      { host: '0000:3b:02.1', group: 5 },
    ],
  });
  t.deepEqual(cl.placements.map((p) => [p.host, p.bus, p.function]), [
    ['0000:3b:02.0', 'rp0', 0],
    ['0000:3b:02.1', 'rp1', 0],
  ]);
});

test('a lone function other than 0 becomes guest function 0', (t) => {
  const slots = layoutSlots([{ host: '0000:03:00.2', group: 9, address: parseBdf('0000:03:00.2')! }]);
  t.deepEqual(slots[0]!.functions.map((f) => f.guestFunction), [0]);
});

test('intel-iommu comes first, with caching-mode and interrupt remapping, on a split irqchip', (t) => {
  const cl = buildCommandLine({ ...base, guestIommu: 'intel-iommu', devices: [{ host: '01:00.0', group: 1 }] });
  t.deepEqual(cl.argv.slice(1, 3), ['-machine', 'q35,kernel-irqchip=split']);
  const devices = cl.argv.filter((_, i) => cl.argv[i - 1] === '-device');
  t.deepEqual(devices[0], 'intel-iommu,intremap=on,caching-mode=on');
});

test('more than 255 vCPUs with intel-iommu turn on extended interrupt mode', (t) => {
  const cl = buildCommandLine({ ...base, cpus: 288, guestIommu: 'intel-iommu' });
  t.true(cl.argv.includes('intel-iommu,intremap=on,caching-mode=on,eim=on'));
});

test('virtio-iommu sits at 00:01.0 of pcie.0, before the root ports', (t) => {
  const cl = buildCommandLine({ ...base, guestIommu: 'virtio-iommu', spareRootPorts: 1 });
  const devices = cl.argv.filter((_, i) => cl.argv[i - 1] === '-device');
  t.deepEqual(devices, ['virtio-iommu-pci,bus=pcie.0,addr=0x1', 'pcie-root-port,id=rp0,chassis=1,bus=pcie.0,addr=0x2.0']);
  t.deepEqual(cl.spareRootPorts, ['rp0']);
});

test('a ninth root port opens the next pcie.0 slot', (t) => {
  const cl = buildCommandLine({ ...base, spareRootPorts: 9 });
  const ports = cl.argv.filter((a) => a.startsWith('pcie-root-port'));
  t.is(ports[7], 'pcie-root-port,id=rp7,chassis=8,bus=pcie.0,addr=0x2.7');
  t.is(ports[8], 'pcie-root-port,id=rp8,chassis=9,bus=pcie.0,addr=0x3.0');
});

test('a pseries guest gets one spapr-pci-host-bridge per PE domain', (t) => {
  const cl = buildCommandLine({
    machine: 'pseries',
    memoryMiB: 2048,
    cpus: 2,
    guestIommu: 'none',
    accel: 'tcg',
    devices: [
      { host: '0001:01:00.0', group: 1, peDomain: 7 },
      { host: '0002:01:00.0', group: 2, peDomain: 3 },
      { host: '0002:02:00.0', group: 2, peDomain: 3 },
    ],
  });
  t.deepEqual(cl.argv, [
    'qemu-system-ppc64',
    '-machine', 'pseries',
    '-accel', 'tcg',
    '-m', '2048M',
    '-smp', '2',
    '-nodefaults',
    '-device', 'spapr-pci-host-bridge,index=1,id=phb1',
    '-device', 'spapr-pci-host-bridge,index=2,id=phb2',
    '-device', 'vfio-pci,host=0001:01:00.0,id=hostdev-0001-01-00-0,bus=phb2.0,addr=0x0.0',
    '-device', 'vfio-pci,host=0002:01:00.0,id=hostdev-0002-01-00-0,bus=phb1.0,addr=0x0.0',
    '-device', 'vfio-pci,host=0002:02:00.0,id=hostdev-0002-02-00-0,bus=phb1.0,addr=0x1.0',
  ]);
  t.deepEqual(cl.placements.map((p) => p.guestDomain), [2, 1, 1]);
});

test('a group split across PE domains is refused', (t) => {
  const err = t.throws(
    () =>
      buildCommandLine({
        machine: 'pseries',
        memoryMiB: 1024,
        cpus: 1,
        guestIommu: 'none',
        devices: [
          { host: '0001:01:00.0', group: 4, peDomain: 1 },
          { host: '0001:02:00.0', group: 4, peDomain: 2 },
        ],
      }),
    { instanceOf: VmDescriptionError },
  );
  t.is(err!.code, 'VM_DESCRIPTION_INVALID');
  t.is(err!.message, 'cannot build a QEMU command line: group 4 spans PE domains 1 and 2; an IOMMU group is one PE and needs one domain');
});

test('a pseries guest with intel-iommu is refused', (t) => {
  const err = t.throws(() => buildCommandLine({ ...base, machine: 'pseries', guestIommu: 'intel-iommu' }), { instanceOf: VmDescriptionError });
  t.regex(err!.message, /a pseries guest always has its sPAPR TCE IOMMU: give guestIommu 'none', not 'intel-iommu'/);
});

test('every problem of a description is named in one error', (t) => {
  const err = t.throws(
    () =>
      buildCommandLine({
        ...base,
        memoryMiB: 0,
        devices: [
          { host: '01:00.0', group: 1 },
          { host: '0000:01:00.0', group: 1 },
          { host: 'eth0', group: 2 },
        ],
      }),
    { instanceOf: VmDescriptionError },
  );
  t.is(
    err!.message,
    'cannot build a QEMU command line: memoryMiB 0 is not a positive integer; device 0000:01:00.0 is listed twice; ' +
      'device id hostdev-0000-01-00-0 is used twice; device host "eth0" is not a PCI address like 0000:01:00.0',
  );
});

test('values with commas are escaped the way QEMU options need', (t) => {
  const cl = buildCommandLine({ ...base, name: 'a,b', qmp: { path: '/run/vm,1/qmp.sock' } });
  t.true(cl.argv.includes('guest=a,,b'));
  t.true(cl.argv.includes('unix:/run/vm,,1/qmp.sock,server=on,wait=off'));
});

test('the readable form puts one option per line and quotes what a shell would split', (t) => {
  t.is(
    formatArgv(['qemu-system-x86_64', '-name', 'guest=my vm', '-nodefaults', '-m', '1024M']),
    "qemu-system-x86_64 \\\n    -name 'guest=my vm' \\\n    -nodefaults \\\n    -m 1024M",
  );
});

test('requirements name vfio-pci, the root port and the chosen vIOMMU', (t) => {
  t.deepEqual(requirementsFor({ ...base, guestIommu: 'virtio-iommu', devices: [{ host: '01:00.0', group: 1 }] }), {
    deviceTypes: ['vfio-pci', 'pcie-root-port', 'virtio-iommu-pci'],
    vfioPciProperties: ['host', 'multifunction', 'addr'],
    deviceProperties: {},
  });
});

test('intel-iommu requires its caching-mode and intremap properties', (t) => {
  t.deepEqual(requirementsFor({ ...base, guestIommu: 'intel-iommu' }).deviceProperties, { 'intel-iommu': ['intremap', 'caching-mode'] });
});

test('an IPv6 QMP address becomes a socket chardev and a monitor, which -qmp tcp: cannot express', (t) => {
  const argv = buildCommandLine({ ...base, qmp: { host: '::1', port: 4444 } }).argv;
  t.false(argv.includes('-qmp'));
  t.is(argv[argv.indexOf('-chardev') + 1], 'socket,id=vfiokit-qmp,host=::1,port=4444,server=on,wait=off');
  t.is(argv[argv.indexOf('-mon') + 1], 'chardev=vfiokit-qmp,mode=control');
});

test('an IPv4 QMP address or host name is written as it is', (t) => {
  t.true(buildCommandLine({ ...base, qmp: { host: '127.0.0.1', port: 4444 } }).argv.includes('tcp:127.0.0.1:4444,server=on,wait=off'));
  t.true(buildCommandLine({ ...base, qmp: { host: 'localhost', port: 1 } }).argv.includes('tcp:localhost:1,server=on,wait=off'));
});

test('an iommufd guest gets one iommufd object and every vfio-pci device attached to it', (t) => {
  const cl = buildCommandLine({ ...base, guestIommu: 'intel-iommu', iommufd: {}, devices: [{ host: '0000:01:00.0', group: 12 }] });
  t.deepEqual(cl.argv.slice(-6), [
    '-object', 'iommufd,id=iommufd0',
    '-device', 'pcie-root-port,id=rp0,chassis=1,bus=pcie.0,addr=0x2.0',
    '-device', 'vfio-pci,host=0000:01:00.0,id=hostdev-0000-01-00-0,bus=rp0,addr=0x0.0,iommufd=iommufd0',
  ]);
});

test('an iommufd guest needs vfio-pci with the iommufd property (QEMU 8.2+)', (t) => {
  t.deepEqual(requirementsFor({ ...base, iommufd: {}, devices: [{ host: '0000:01:00.0', group: 12 }] }).vfioPciProperties, [
    'host', 'multifunction', 'addr', 'iommufd',
  ]);
});

test('a pseries guest cannot take its devices through iommufd', (t) => {
  const e = t.throws(() => buildCommandLine({ ...base, machine: 'pseries', iommufd: {}, devices: [{ host: '0000:01:00.0', group: 12 }] }));
  t.true(e instanceof VmDescriptionError);
});
