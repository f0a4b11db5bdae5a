import test from 'ava';
import { parseGuestSpec } from './guest-spec';
import { CliError } from './errors';

const minimal = 'name: g1\nmemory: 4G\ndevices: [0000:01:00.0]\n';

test('a minimal spec defaults to one vCPU on q35 with no guest IOMMU', (t) => {
  t.deepEqual(parseGuestSpec(minimal, 'g.yaml'), {
    name: 'g1',
    memoryBytes: 4n << 30n,
    cpus: 1,
    machine: 'q35',
    iommu: 'none',
    devices: [{ address: '0000:01:00.0' }],
  });
});

test('a pseries spec without iommu gets spapr-tce', (t) => {
  t.is(parseGuestSpec('name: p\nmemory: 2048\nmachine: pseries\ndevices: [0001:01:00.0]\n', 'p.yaml').iommu, 'spapr-tce');
});

test('a bare memory number is MiB, as for QEMU -m', (t) => {
  t.is(parseGuestSpec('name: g\nmemory: 512\ndevices: [01:00.0]\n', 'g.yaml').memoryBytes, 512n << 20n);
});

test('devices may be short addresses, vendor:device IDs, or objects with an index', (t) => {
  const spec = parseGuestSpec('name: g\nmemory: 1G\ndevices: ["01:00.0", "8086:10ed", {id: "8086:10ed", index: 2}]\n', 'g.yaml');
  t.deepEqual(spec.devices, [{ address: '0000:01:00.0' }, { vendor: 0x8086, device: 0x10ed, index: 0 }, { vendor: 0x8086, device: 0x10ed, index: 2 }]);
});

test('a wrong field type is reported with the field path', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: lots\ndevices: [01:00.0, nonsense]\n', 'bad.yaml'), { instanceOf: CliError });
  t.is(err.code, 'SPEC_INVALID');
  t.is(
    err.message,
    'bad.yaml is not a valid guest spec:\n  memory: "lots" is not a size; write it as 8G, 8GiB, 512M or a number of MiB\n  devices[1]: "nonsense" is neither a PCI address (0000:01:00.0) nor vendor:device IDs (10de:1b80)',
  );
});

test('an unknown key is refused by name', (t) => {
  const err = t.throws(() => parseGuestSpec(minimal + 'memroy: 2G\n', 'g.yaml'), { instanceOf: CliError });
  t.regex(err.message, /\(top level\): Unrecognized key: "memroy"/);
});

test('spapr-tce on q35 is refused naming the iommu field', (t) => {
  const err = t.throws(() => parseGuestSpec(minimal + 'iommu: spapr-tce\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml is not a valid guest spec:\n  iommu: spapr-tce exists only on machine: pseries; on q35 use none, intel-iommu or virtio-iommu');
});

test('malformed YAML names the line', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: [4G\n', 'y.yaml'), { instanceOf: CliError });
  t.is(err.code, 'SPEC_MALFORMED_YAML');
  t.regex(err.message, /^y\.yaml is not valid YAML \(line \d+, column \d+\): /);
});
