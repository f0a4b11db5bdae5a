import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { temporaryFixtureDir, createFixtureHost, createFixtureHostFromSpec, FIXTURE_HOSTS, type FixtureDevice, type FixtureSpec } from '@vfiokit/testkit';
import { discoverHost, findDevice, findGroup, iommuKindOfUnit, parsePeName, parseReservedRegions } from './discover';
import { parsePciIds } from './pci-ids';

const workstation = () => discoverHost(createFixtureHost('workstation').fs);

test('discovery lists every PCI device of the workstation', (t) => {
  t.is(workstation().devices.length, 15);
});

test('the GPU and its HDMI audio share group 1 with their root port', (t) => {
  t.deepEqual(
    findGroup(workstation(), 1).devices.map((d) => d.address),
    ['0000:00:01.0', '0000:01:00.0', '0000:01:00.1'],
  );
});

test('a device reports its bound driver', (t) => {
  t.is(findDevice(workstation(), '0000:01:00.1').driver, 'snd_hda_intel');
});

test('a device without a driver reports none', (t) => {
  t.is(findDevice(workstation(), '0000:00:1f.0').driver, undefined);
});

test('ids and names come from sysfs and pci.ids', (t) => {
  const gpu = findDevice(workstation(), '0000:01:00.0');
  t.deepEqual(
    [gpu.vendorId, gpu.deviceId, gpu.classCode, gpu.names.vendor, gpu.names.device, gpu.names.className],
    [0x10de, 0x1b80, 0x030000, 'NVIDIA Corporation', 'GP104 [GeForce GTX 1080]', 'VGA compatible controller'],
  );
});

test('names are absent, not wrong, on a host without pci.ids', (t) => {
  const model = discoverHost(createFixtureHost('no-iommu').fs);
  t.deepEqual([findDevice(model, '0000:00:02.0').names, model.pciIdsSource], [{}, undefined]);
});

test('the console GPU is marked boot_vga', (t) => {
  t.true(findDevice(workstation(), '0000:01:00.0').bootVga);
});

test('a device behind a root port names it as upstream', (t) => {
  t.is(findDevice(workstation(), '0000:02:00.0').upstream, '0000:00:1b.0');
});

test('a root port is a bridge with the PCIe root-port type', (t) => {
  const port = findDevice(workstation(), '0000:00:1b.0');
  t.deepEqual([port.isBridge, port.headerType, port.pcieType], [true, 'bridge', 'root-port']);
});

test('ACS control bits are read from the extended config space', (t) => {
  t.deepEqual(findDevice(workstation(), '0000:00:1b.0').acs?.enabled, ['SV', 'RR', 'CR', 'UF']);
});

test('a root port without ACS shows none', (t) => {
  t.is(findDevice(workstation(), '0000:00:01.0').acs, undefined);
});

test('a group reports its reserved regions as start and size', (t) => {
  t.deepEqual(findGroup(workstation(), 9).reservedRegions, [
    { start: 0n, size: 0x1000000n, type: 'direct-relaxable' },
    { start: 0xfee00000n, size: 0x100000n, type: 'msi' },
  ]);
});

test('the workstation has an Intel VT-d IOMMU', (t) => {
  t.deepEqual(workstation().iommu, {
    present: true,
    kind: 'intel-vtd',
    units: ['dmar0', 'dmar1'],
    addressWidth: 39,
    unsafeNoIommuMode: false,
    msiIsolation: { state: 'isolated', evidence: ['/proc/interrupts: interrupts go through the remapped chip IR-IO-APIC'] },
  });
});

test('a host without an IOMMU has no groups and says so', (t) => {
  const model = discoverHost(createFixtureHost('no-iommu').fs);
  t.deepEqual([model.iommu, model.groups.length], [{ present: false, units: [], unsafeNoIommuMode: false, msiIsolation: { state: 'unknown', evidence: [] } }, 0]);
});

test('an SR-IOV physical function lists its enabled virtual functions', (t) => {
  const model = discoverHost(createFixtureHost('sriov-server').fs);
  t.deepEqual(findDevice(model, '0000:3b:00.0').sriov, {
    totalVfs: 64,
    numVfs: 4,
    virtualFunctions: ['0000:3b:02.0', '0000:3b:02.1', '0000:3b:02.2', '0000:3b:02.3'],
  });
});

test('a virtual function names its physical function', (t) => {
  const model = discoverHost(createFixtureHost('sriov-server').fs);
  t.is(findDevice(model, '0000:3b:02.2').physicalFunction, '0000:3b:00.0');
});

test('NUMA node -1 reads as no node', (t) => {
  t.is(findDevice(workstation(), '0000:01:00.0').numaNode, undefined);
});

test('a NUMA node is reported when the kernel knows it', (t) => {
  t.is(findDevice(discoverHost(createFixtureHost('sriov-server').fs), '0000:3b:00.0').numaNode, 1);
});

test('the PCIe-to-PCI bridge shares its group with the cards behind it', (t) => {
  const model = discoverHost(createFixtureHost('bridge-group').fs);
  t.deepEqual(
    findGroup(model, 2).devices.map((d) => [d.address, d.isBridge, d.upstream]),
    [
      ['0000:01:00.0', true, '0000:00:1c.0'],
      ['0000:02:00.0', false, '0000:01:00.0'],
      ['0000:02:01.0', false, '0000:01:00.0'],
      ['0000:02:02.0', false, '0000:01:00.0'],
    ],
  );
});

test('POWER8 is detected as a POWER host with an sPAPR TCE IOMMU', (t) => {
  const model = discoverHost(createFixtureHost('power8').fs);
  t.deepEqual([model.platform, model.iommu.kind], ['power', 'spapr-tce']);
});

test('each POWER8 PHB is its own PCI domain with its own groups', (t) => {
  const model = discoverHost(createFixtureHost('power8').fs);
  t.deepEqual(
    model.hostBridges.map((b) => [b.name, b.domain, b.groups]),
    [
      ['pci0000:00', 0, [0]],
      ['pci0001:00', 1, [1]],
      ['pci0002:00', 2, [2]],
      ['pci0003:00', 3, [3]],
    ],
  );
});

test('a POWER group says which PE it is', (t) => {
  t.deepEqual(findGroup(discoverHost(createFixtureHost('power8').fs), 3).pe, { domain: 3, pe: 1 });
});

test('a short address means domain 0', (t) => {
  t.is(findDevice(workstation(), '1:00.1').address, '0000:01:00.1');
});

test('an unknown address is HOST_DEVICE_NOT_FOUND', (t) => {
  t.is(t.throws(() => findDevice(workstation(), '0000:09:00.0'))?.message, 'no PCI device 0000:09:00.0 on this host (not in /sys/bus/pci/devices)');
});

test('a malformed address is HOST_INVALID_ADDRESS', (t) => {
  t.is((t.throws(() => findDevice(workstation(), '0000:01:00')) as { code?: string }).code, 'HOST_INVALID_ADDRESS');
});

test('a device number above 0x1f is malformed', (t) => {
  t.is((t.throws(() => findDevice(workstation(), '0000:01:20.0')) as { code?: string }).code, 'HOST_INVALID_ADDRESS');
});

test('a missing group is HOST_GROUP_NOT_FOUND', (t) => {
  t.is((t.throws(() => findGroup(workstation(), 42)) as { code?: string }).code, 'HOST_GROUP_NOT_FOUND');
});

test('reserved_regions lines parse with inclusive ends', (t) => {
  t.deepEqual(parseReservedRegions('0x00000000fee00000 0x00000000feefffff msi\n'), [{ start: 0xfee00000n, size: 0x100000n, type: 'msi' }]);
});

test('a POWER group name gives its domain and hex PE number', (t) => {
  t.deepEqual(parsePeName('domain2-pe1f'), { domain: 2, pe: 0x1f });
});

test('pci.ids subsystem lines name a subsystem', (t) => {
  const ids = parsePciIds('10de  NVIDIA Corporation\n\t1b80  GP104\n\t\t3842 6180  GTX 1080 FTW\n', 'x');
  t.is(ids.namesFor({ vendorId: 0x10de, deviceId: 0x1b80, subsystemVendorId: 0x3842, subsystemDeviceId: 0x6180, classCode: 0 }).subsystem, 'GTX 1080 FTW');
});

test('BARs are read from the resource file with their kinds', (t) => {
  t.deepEqual(
    findDevice(workstation(), '0000:01:00.0').bars.map((b) => [b.index, b.size, b.kind, b.prefetchable, b.is64]),
    [
      [0, 0x1000000n, 'mem', false, false],
      [1, 0x10000000n, 'mem', true, true],
      [3, 0x2000000n, 'mem', true, true],
      [5, 0x80n, 'io', false, false],
    ],
  );
});

test('a bridge has no BARs in the fixture', (t) => {
  t.deepEqual(findDevice(workstation(), '0000:00:1b.0').bars, []);
});

test('IOMMU units name their kind: dmar, ivhd, smmu3, smmu, iommu-phb', (t) => {
  t.deepEqual(
    ['dmar0', 'ivhd0', 'smmu3.0x0000000009050000', 'smmu.0x0000000009050000', 'iommu-phb0001', 'virtio-iommu'].map(iommuKindOfUnit),
    ['intel-vtd', 'amd-vi', 'arm-smmu-v3', 'arm-smmu', 'spapr-tce', 'virtio-iommu'],
  );
});

test('the kernel command line is part of the model', (t) => {
  t.is(discoverHost(createFixtureHost('no-iommu').fs).kernelCommandLine, 'BOOT_IMAGE=/vmlinuz-6.1.0-27-amd64 root=/dev/sda2 ro intel_iommu=off');
});

test('ACS of a multi-function endpoint is read from its extended config space', (t) => {
  t.deepEqual(findDevice(discoverHost(createFixtureHost('sriov-server').fs), '0000:3b:00.1').acs?.enabled, ['SV', 'RR', 'CR', 'UF']);
});

/**
 * The lab's pseries guest as its 6.12 kernel showed it (QEMU pseries, two
 * PHBs with one edu each, dumped from sysfs in the guest): one IOMMU unit
 * `iommu-phb0000`, groups named `domainN-pe0` with type `unknown` and no
 * reserved regions, and cpuinfo's `platform : pSeries`.
 */
const pseriesLab = (): FixtureSpec => {
  const edu = (domain: string, group: number): FixtureDevice => ({
    address: `${domain}:00:02.0`, vendorId: 0x1234, deviceId: 0x11e8, classCode: 0x00ff00,
    vendorName: 'QEMU', deviceName: 'edu', group, driver: 'vfio-pci', pcie: 'endpoint',
  });
  return {
    ...FIXTURE_HOSTS['power8']!,
    name: 'pseries-lab',
    cpuinfo: 'processor\t: 0\ncpu\t\t: POWER9 (architected), altivec supported\nclock\t\t: 1000.000000MHz\nrevision\t: 2.0 (pvr 004e 1200)\n\ntimebase\t: 512000000\nplatform\t: pSeries\nmodel\t\t: IBM pSeries (emulated by qemu)\nmachine\t\t: CHRP IBM pSeries (emulated by qemu)\nMMU\t\t: Radix\n',
    osrelease: '6.12.95+deb12-powerpc64le',
    iommuUnits: ['iommu-phb0000'],
    groupType: 'unknown',
    groupNames: { '0': 'domain0-pe0', '1': 'domain1-pe0' },
    drivers: ['vfio-pci'],
    devices: [edu('0000', 0), edu('0001', 1)],
  };
};

test('the lab pseries guest reads as a POWER host with an sPAPR IOMMU and one PE per PHB', (t) => {
  const model = discoverHost(createFixtureHostFromSpec(pseriesLab(), temporaryFixtureDir('vfiokit-pseries-')).fs);
  t.deepEqual(
    [model.platform, model.iommu.kind, model.groups.map((g) => [g.id, g.pe, g.domainType, g.reservedRegions]), model.hostBridges.map((b) => b.name)],
    [
      'power',
      'spapr-tce',
      [
        [0, { domain: 0, pe: 0 }, 'unknown', []],
        [1, { domain: 1, pe: 0 }, 'unknown', []],
      ],
      ['pci0000:00', 'pci0001:00'],
    ],
  );
});

test('pci.ids comments inside a vendor block do not end it', (t) => {
  const ids = parsePciIds('8086  Intel Corporation\n\t1572  X710\n# a comment\n\t154c  X710 VF\n10de  NVIDIA Corporation\n', 'x');
  t.is(ids.namesFor({ vendorId: 0x8086, deviceId: 0x154c, classCode: 0 }).device, 'X710 VF');
});

test('pci.ids class lines name subclasses, and a device of another vendor is not confused', (t) => {
  const ids = parsePciIds('8086  Intel Corporation\n\t1572  X710\n10de  NVIDIA Corporation\nC 02  Network controller\n\t00  Ethernet controller\n', 'x');
  t.deepEqual(ids.namesFor({ vendorId: 0x10de, deviceId: 0x1572, classCode: 0x020000 }), {
    vendor: 'NVIDIA Corporation',
    className: 'Ethernet controller',
  });
});

test('the VT-d address width comes from MGAW in the capability register', (t) => {
  t.deepEqual(
    [workstation().iommu.addressWidth, discoverHost(createFixtureHost('sriov-server').fs).iommu.addressWidth],
    [39, 48],
  );
});

test('a host whose units show no capability register has no address width', (t) => {
  t.is(discoverHost(createFixtureHost('bridge-group').fs).iommu.addressWidth, undefined);
});

test('the AMD server reads as AMD-Vi with the HyperTransport hole reserved in every group', (t) => {
  const model = discoverHost(createFixtureHost('amd-server').fs);
  t.is(model.iommu.kind, 'amd-vi');
  for (const g of model.groups) t.deepEqual(g.reservedRegions.map((r) => [r.start, r.size, r.type]), [[0xfee00000n, 0x100000n, 'msi'], [0xfd00000000n, 0x300000000n, 'reserved']]);
});

test('the arm64 server reads as SMMUv3 on Arm, the serial card sharing its group with the PCIe-to-PCI bridge above it', (t) => {
  const model = discoverHost(createFixtureHost('arm64-server').fs);
  t.deepEqual([model.platform, model.iommu.kind, model.iommu.msiIsolation.state], ['arm', 'arm-smmu-v3', 'isolated']);
  t.deepEqual(findGroup(model, 8).devices.map((d) => [d.address, d.isBridge]), [['0006:01:00.0', true], ['0006:02:00.0', false]]);
  t.deepEqual(findGroup(model, 6).reservedRegions, [{ start: 0x8000000n, size: 0x100000n, type: 'msi' }]);
});

test('a kernel without iommufd shows no /dev/iommu and no device cdevs', (t) => {
  const m = workstation();
  t.false(m.iommufd);
  t.true(m.devices.every((d) => d.vfioCdev === undefined));
});

test('an iommufd kernel shows /dev/iommu and the cdev of each device on vfio-pci', (t) => {
  const host = createFixtureHost('iommufd-workstation');
  host.fs.writeText('/sys/bus/pci/drivers/xhci_hcd/unbind', '0000:04:00.0');
  host.fs.writeText('/sys/bus/pci/devices/0000:04:00.0/driver_override', 'vfio-pci');
  host.fs.writeText('/sys/bus/pci/drivers/vfio-pci/bind', '0000:04:00.0');
  const m = discoverHost(host.fs);
  t.true(m.iommufd);
  t.deepEqual(m.devices.filter((d) => d.vfioCdev !== undefined).map((d) => [d.address, d.vfioCdev]), [['0000:04:00.0', 0]]);
});

test('an iommufd kernel lists the vfio-dev char device in /proc/devices; a host whose /proc/devices is not read says nothing', (t) => {
  t.true(discoverHost(createFixtureHost('iommufd-workstation').fs).vfioCdevs);
  t.is(workstation().vfioCdevs, undefined);
});

test("a vfio-dev/vfioN entry without a dev node (any kernel since 6.1, no CONFIG_VFIO_DEVICE_CDEV) is not a cdev", (t) => {
  const host = createFixtureHost('workstation');
  try {
    // The entry as vfio_device_add leaves it without a dev_t.
    const entry = join(host.root, 'sys/bus/pci/devices/0000:04:00.0/vfio-dev/vfio0');
    mkdirSync(entry, { recursive: true });
    writeFileSync(join(entry, 'uevent'), 'MAJOR=\n');
    t.is(discoverHost(host.fs).devices.find((d) => d.address === '0000:04:00.0')!.vfioCdev, undefined);
    writeFileSync(join(entry, 'dev'), '511:0\n');
    t.is(discoverHost(host.fs).devices.find((d) => d.address === '0000:04:00.0')!.vfioCdev, 0);
  } finally {
    rmSync(host.root, { recursive: true, force: true });
  }
});
