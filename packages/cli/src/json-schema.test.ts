// Every --json document validates against its published, versioned schema,
// and the files in schemas/ are what json-schema.ts generates.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { assertDocument, SCHEMAS, type SchemaName } from './json-schema';
import { SCHEMA_DIR, schemaFileText } from './write-schemas';
import { EXAMPLES, PACKAGE_DIR, vfiokit } from './testing/run-cli';

const REPO = join(PACKAGE_DIR, '..', '..');
const TRACE = join(REPO, 'packages/core/src/dma/fixtures/e1000e-strict-6.1-phase1.txt');

test('the published schemas are the ones json-schema.ts generates, one file per document', (t) => {
  t.deepEqual(readdirSync(SCHEMA_DIR).sort(), Object.keys(SCHEMAS).map((n) => `${n}.schema.json`).sort());
  for (const name of Object.keys(SCHEMAS) as SchemaName[]) {
    t.is(readFileSync(join(SCHEMA_DIR, `${name}.schema.json`), 'utf8'), schemaFileText(name), `${name}: run 'pnpm --filter @vfiokit/cli schemas'`);
  }
});

test('every published schema names its version in its $id', (t) => {
  for (const f of readdirSync(SCHEMA_DIR)) t.regex((JSON.parse(readFileSync(join(SCHEMA_DIR, f), 'utf8')) as { $id: string }).$id, /^urn:vfiokit:cli:schemas:v1:[a-z-]+$/);
});

function mockDir(t: ExecutionContext): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-schema-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return ['--mock', 'workstation', '--mock-dir', dir];
}

/** Run with --json, require exit 0, and validate stdout against `name`. */
async function validates(t: ExecutionContext, name: SchemaName, args: readonly string[], code = 0): Promise<void> {
  const run = await vfiokit(['--json', ...args]);
  t.is(run.code, code, run.stderr);
  t.notThrows(() => assertDocument(name, JSON.parse(run.stdout)), `${args.join(' ')}`);
}

const SIMPLE: readonly [SchemaName, readonly string[]][] = [
  ['ls', ['--mock', 'workstation', 'ls']],
  ['ls', ['--mock', 'sriov-server', 'ls']],
  ['show', ['--mock', 'workstation', 'show', '0000:01:00.0']],
  ['show', ['--mock', 'workstation', 'show', '1']],
  ['bind', ['--mock', 'workstation', 'bind', '--dry-run', '11']],
  ['bind', ['--mock', 'workstation', 'bind', '11']],
  ['persist', ['--mock', 'workstation', 'persist', '11']],
  ['persist', ['--mock', 'sriov-server', 'persist', '--method', 'modprobe', '--dry-run', '4', '5', '6', '7']],
  ['plan', ['--mock', 'workstation', 'plan', join(EXAMPLES, 'usb-controller.yaml'), '--memlock', 'unlimited']],
  ['plan', ['--mock', 'power8', 'plan', join(EXAMPLES, 'power8-tesla.yaml'), '--memlock', 'unlimited']],
  ['plan-qemu-args', ['--mock', 'sriov-server', 'plan', join(EXAMPLES, 'sriov-vfs-viommu.yaml'), '--memlock', 'unlimited', '--format', 'qemu-args']],
  ['trace-replay', ['trace', 'replay', '--device', '0000:00:02.0', TRACE]],
  ['demo', ['demo', '--no-qemu']],
  ['completion', ['completion', 'bash']],
];

for (const [name, args] of SIMPLE) {
  test(`vfiokit --json ${args.join(' ').replace(PACKAGE_DIR + '/', '').replace(REPO + '/', '')} validates against the ${name} schema`, (t) => validates(t, name, args));
}

test('a check that fails still prints a document that validates against the check schema', (t) => validates(t, 'check', ['--mock', 'workstation', 'check', '0000:00:17.0', '11'], 5));

test('unbind and map after a bind in a kept simulated host validate against their schemas', async (t) => {
  const ws = mockDir(t);
  t.is((await vfiokit([...ws, 'bind', '11'])).code, 0);
  await validates(t, 'map', [...ws, 'map', '--group', '11', '--memory', '1G']);
  await validates(t, 'unbind', [...ws, 'unbind', '11']);
});

test('unpersist validates against its schema', async (t) => {
  const ws = mockDir(t);
  t.is((await vfiokit([...ws, 'persist', '11'])).code, 0);
  await validates(t, 'unpersist', [...ws, 'unpersist', '11']);
});

test('an error in --json mode validates against the error schema', async (t) => {
  const run = await vfiokit(['--json', '--mock', 'workstation', 'show', '0000:99:00.0']);
  t.is(run.code, 3);
  t.notThrows(() => assertDocument('error', JSON.parse(run.stderr)));
});
