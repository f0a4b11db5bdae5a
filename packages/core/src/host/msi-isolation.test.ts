import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { createFixtureHost, createFixtureHostFromSpec, FIXTURE_HOSTS } from '@vfiokit/testkit';
import { discoverHost } from './discover';
import { msiIsolationVerdict, readMsiIsolation } from './msi-isolation';
import type { HostModel } from './model';
import type { HostFs } from './seam';

function model(name: string, over: Partial<(typeof FIXTURE_HOSTS)[string]> = {}): HostModel {
  const h = over && Object.keys(over).length > 0 ? createFixtureHostFromSpec({ ...FIXTURE_HOSTS[name]!, ...over }, mkdtempSync(join(tmpdir(), 'vfiokit-msi-'))) : createFixtureHost(name);
  try {
    return discoverHost(h.fs as HostFs);
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
}

test('an x86 host whose interrupts go through IR- chips has interrupt remapping', (t) => {
  const m = model('amd-server').iommu.msiIsolation;
  t.is(m.state, 'isolated');
  t.regex(m.evidence[0]!, /IR-IO-APIC/);
  t.false(m.allowUnsafeInterrupts!);
});

test('VT-d without IR in ecap and plain IO-APIC chips is a host without interrupt remapping', (t) => {
  const m = model('no-interrupt-remapping').iommu.msiIsolation;
  t.is(m.state, 'none');
  t.true(m.evidence.some((e) => /IO-APIC, not IR-IO-APIC/.test(e)));
  t.true(m.evidence.some((e) => /dmar0's extended capability register \(ecap f42\) has no interrupt remapping/.test(e)));
});

test('intremap=off on the command line is named as the cause', (t) => {
  const m = model('no-interrupt-remapping', { cmdline: 'root=/dev/sda2 ro intel_iommu=on intremap=off' }).iommu.msiIsolation;
  t.true(m.evidence.includes('the kernel command line has intremap=off'));
});

test('an arm64 host whose MSIs go through ITS-MSI has MSI isolation', (t) => {
  const m = model('arm64-server').iommu.msiIsolation;
  t.is(m.state, 'isolated');
  t.regex(m.evidence[0]!, /GIC ITS \(ITS-MSI\)/);
});

test('an arm64 host whose MSIs go through GICv2m has no MSI isolation', (t) => {
  // As the lab's gic-version=2 guest shows it.
  const interrupts = '           CPU0       CPU1\n 21:          0          0       MSI 65536 Edge      shpchp\n';
  t.is(model('arm64-server', { interrupts }).iommu.msiIsolation.state, 'none');
});

test('a host that shows no interrupt chips is unknown, and check and plan stay quiet about it', (t) => {
  const m = model('arm64-server', { interrupts: '' }).iommu.msiIsolation;
  t.is(m.state, 'unknown');
  t.true(msiIsolationVerdict('arm', m).ok);
  t.is(msiIsolationVerdict('arm', m).severity, undefined);
});

test('without interrupt remapping the verdict is a refusal naming EPERM and both fixes, the unsafe one with its meaning', (t) => {
  const v = msiIsolationVerdict('x86', model('no-interrupt-remapping').iommu.msiIsolation);
  t.false(v.ok);
  t.is(v.severity, 'refusal');
  t.regex(v.message, /^no interrupt remapping .*VFIO_SET_IOMMU fails with EPERM/);
  t.is(v.fixes.length, 2);
  t.regex(v.fixes[0]!, /enable VT-d \/ AMD-Vi \(IOMMU\) with interrupt remapping in the firmware/);
  t.regex(v.fixes[1]!, /allow_unsafe_interrupts=1.*forge MSIs/);
});

test('with allow_unsafe_interrupts=Y the verdict is a warning that says what it costs', (t) => {
  const v = msiIsolationVerdict('x86', model('no-interrupt-remapping', { type1: { allowUnsafeInterrupts: true } }).iommu.msiIsolation);
  t.true(v.ok);
  t.is(v.severity, 'warning');
  t.regex(v.message, /allow_unsafe_interrupts is Y: the assigned device can then forge MSIs/);
});

test('on Arm the refusal is named the Arm way: no MSI isolation, no GIC ITS', (t) => {
  const v = msiIsolationVerdict('arm', { state: 'none', evidence: ['/proc/interrupts: MSIs go through GICv2m-PCI-MSI'] });
  t.regex(v.message, /^no MSI isolation \(no GIC ITS\)/);
  t.regex(v.fixes[0]!, /GIC has an ITS/);
});

test('a device-tree ITS node counts when no MSI is in use yet', (t) => {
  const files: Record<string, string> = { '/sys/firmware/devicetree/base/intc@8000000/its@8080000/compatible': 'arm,gic-v3-its\0' };
  const fs = {
    readText: (f: string) => files[f],
    list: (d: string) => (d === '/sys/firmware/devicetree/base' ? ['intc@8000000', 'memory@40000000'] : d === '/sys/firmware/devicetree/base/intc@8000000' ? ['its@8080000'] : []),
  } as unknown as HostFs;
  t.deepEqual(readMsiIsolation(fs, 'arm', []), { state: 'isolated', evidence: ['the device tree has a GIC ITS (intc@8000000/its@8080000, arm,gic-v3-its)'] });
});
