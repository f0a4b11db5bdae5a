import test from 'ava';
import { pseriesDomains, q35Domains, slotsOf } from './domains';

test('a GPU and its audio function share one root port as functions 0 and 1', (t) => {
  const [rp, ...rest] = q35Domains([{ group: 12, functions: ['0000:01:00.1', '0000:01:00.0'] }]);
  t.is(rest.length, 0);
  t.deepEqual(rp, {
    kind: 'pcie-root-port',
    id: 'rp0',
    chassis: 1,
    group: 12,
    devices: [
      {
        hostSlot: '0000:01:00',
        guestDevice: 0,
        multifunction: true,
        functions: [
          { hostAddress: '0000:01:00.0', guestFunction: 0 },
          { hostAddress: '0000:01:00.1', guestFunction: 1 },
        ],
      },
    ],
  });
});

test('two host slots of one group get a root port each, numbered on from the previous group', (t) => {
  const domains = q35Domains([
    { group: 3, functions: ['0000:00:1f.0'] },
    { group: 7, functions: ['0000:04:01.0', '0000:04:02.0'] },
  ]);
  t.deepEqual(
    domains.map((d) => [d.id, d.chassis, d.group, d.devices[0]!.hostSlot]),
    [
      ['rp0', 1, 3, '0000:00:1f'],
      ['rp1', 2, 7, '0000:04:01'],
      ['rp2', 3, 7, '0000:04:02'],
    ],
  );
});

test('a lone virtual function at function 3 becomes guest function 0', (t) => {
  const [slot] = slotsOf(['0000:03:10.3'], 0);
  t.deepEqual(slot!.functions, [{ hostAddress: '0000:03:10.3', guestFunction: 0 }]);
  t.false(slot!.multifunction);
});

test('each pseries PE gets its own guest PHB from the DMA policy, indexes from 1 under the machine', (t) => {
  const domains = pseriesDomains([
    { group: 0, functions: ['0001:01:00.0'], reservedRegions: [] },
    { group: 1, functions: ['0002:01:00.0', '0002:01:00.1'], reservedRegions: [] },
  ]);
  t.deepEqual(
    domains.map((d) => [d.kind, d.bridge.id, d.bridge.index, d.parent, d.group, d.devices[0]!.functions.length]),
    [
      ['spapr-pci-host-bridge', 'phb1', 1, 'spapr-machine', 0, 1],
      ['spapr-pci-host-bridge', 'phb2', 2, 'spapr-machine', 1, 2],
    ],
  );
});
