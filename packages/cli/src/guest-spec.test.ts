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
  t.is(parseGuestSpec('name: p\nmemory: 2048M\nmachine: pseries\ndevices: [0001:01:00.0]\n', 'p.yaml').iommu, 'spapr-tce');
});

test('memory reads as the command line reads sizes: a bare number is bytes, 1.5G and 4GiB are taken', (t) => {
  const mem = (m: string) => parseGuestSpec(`name: g\nmemory: ${m}\ndevices: [01:00.0]\n`, 'g.yaml').memoryBytes;
  t.is(mem('536870912'), 512n << 20n);
  t.is(mem('1.5G'), 3n << 29n);
  t.is(mem('4GiB'), 4n << 30n);
});

test('a bare memory number too small for a guest asks whether MiB or GiB was meant', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: 512\ndevices: [01:00.0]\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml:2:9: memory: 512 bytes is too little for a guest (a bare number is bytes); did you mean 512M or 512G?');
});

test('4GB in a spec is refused as ambiguous, as on the command line', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: 4GB\ndevices: [01:00.0]\n', 'g.yaml'), { instanceOf: CliError });
  t.regex(err.message, /^g\.yaml:2:9: memory: "4GB" is ambiguous/);
});

test('devices may be short addresses, vendor:device IDs, or objects with an index', (t) => {
  const spec = parseGuestSpec('name: g\nmemory: 1G\ndevices: ["01:00.0", "8086:10ed", {id: "8086:10ed", index: 2}]\n', 'g.yaml');
  t.deepEqual(spec.devices, [{ address: '0000:01:00.0' }, { vendor: 0x8086, device: 0x10ed, index: 0 }, { vendor: 0x8086, device: 0x10ed, index: 2 }]);
});

test('every wrong field is placed by line and column; the first is the summary, all are details', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: lots\ndevices: [01:00.0, nonsense]\n', 'bad.yaml'), { instanceOf: CliError });
  t.is(err.code, 'SPEC_INVALID');
  t.is(err.message, 'bad.yaml:2:9: memory: "lots" is not a size such as 4G, 4GiB, 1.5G, 512M or a number of bytes (and 1 more problem)');
  t.deepEqual(err.details, [
    'bad.yaml:2:9: memory: "lots" is not a size such as 4G, 4GiB, 1.5G, 512M or a number of bytes',
    'bad.yaml:3:20: devices[1]: "nonsense" is neither a PCI address (0000:01:00.0) nor vendor:device IDs (10de:1b80)',
  ]);
});

test('a misspelt key is placed and gets a did-you-mean', (t) => {
  const err = t.throws(() => parseGuestSpec(minimal + 'memroy: 2G\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml:4:1: memroy: unknown field; did you mean memory?');
});

test('a misspelt key inside a device entry is placed there', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: 1G\ndevices:\n  - id: 8086:10ed\n    idx: 1\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml:5:5: devices[0].idx: unknown field; did you mean id?');
});

test('a misspelt choice gets the nearest choice', (t) => {
  const err = t.throws(() => parseGuestSpec(minimal + 'machine: q53\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml:4:10: machine: "q53" is not one of q35, pseries; did you mean q35?');
});

test('spapr-tce on q35 is refused naming the iommu field and its line', (t) => {
  const err = t.throws(() => parseGuestSpec(minimal + 'iommu: spapr-tce\n', 'g.yaml'), { instanceOf: CliError });
  t.is(err.message, 'g.yaml:4:8: iommu: spapr-tce exists only on machine: pseries; on q35 use none, intel-iommu or virtio-iommu');
});

test('malformed YAML names the line', (t) => {
  const err = t.throws(() => parseGuestSpec('name: g\nmemory: [4G\n', 'y.yaml'), { instanceOf: CliError });
  t.is(err.code, 'SPEC_MALFORMED_YAML');
  t.regex(err.message, /^y\.yaml:\d+:\d+: not valid YAML: /);
});
