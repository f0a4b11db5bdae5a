import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findLabFiles, runLabFiles } from './guest';

/** A fake workspace whose packages' dist folders hold the given lab files. */
function workspace(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'vfiokit-labws-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test('the iommufd kernel\'s cases (*.iommufd-lab.js) are found only when asked for, never among the plain *.lab.js', (t) => {
  const root = workspace({ 'packages/a/dist/x.lab.js': '', 'packages/a/dist/y.iommufd-lab.js': '' });
  try {
    t.deepEqual(findLabFiles(root), [join(root, 'packages/a/dist/x.lab.js')]);
    t.deepEqual(findLabFiles(root, '.iommufd-lab.js'), [join(root, 'packages/a/dist/y.iommufd-lab.js')]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('every *.lab.js under a package dist-test, or its dist when it has none, is found in a stable order, and nothing under node_modules or a stale dist', (t) => {
  const root = workspace({
    'packages/b/dist/x.lab.js': '',
    'packages/b/dist-test/v.lab.js': '',
    'packages/a/dist/deep/y.lab.js': '',
    'packages/a/dist/node_modules/z.lab.js': '',
    'packages/a/src/w.lab.js': '',
  });
  try {
    // b builds its lab cases into dist-test: b/dist/x.lab.js is an older build's leftover.
    t.deepEqual(findLabFiles(root), [join(root, 'packages/a/dist/deep/y.lab.js'), join(root, 'packages/b/dist-test/v.lab.js')]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('each case is reported by file and name; a failure, a load error and a hang each count as one failed case', async (t) => {
  const root = workspace({
    'packages/a/dist/good.lab.js': `exports.cases = [{ name: 'passes', run: () => {} }, { name: 'fails', run: () => { throw new Error('boom'); } }];`,
    'packages/a/dist/broken.lab.js': `throw new Error('cannot load');`,
    'packages/a/dist/slow.lab.js': `exports.cases = [{ name: 'hangs', run: () => new Promise(() => {}) }];`,
  });
  try {
    const reports = await runLabFiles(root, findLabFiles(root), 200);
    t.deepEqual(
      reports.map((r) => [r.name, r.ok]),
      [
        ['a/broken: loads', false],
        ['a/good: passes', true],
        ['a/good: fails', false],
        ['a/slow: hangs', false],
      ],
    );
    t.regex(reports[3]!.detail!.join('\n'), /did not finish within 0.2 s/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a case's own timeoutMs replaces the default, and a pattern runs only the cases whose 'file: name' it matches", async (t) => {
  const root = workspace({
    'packages/a/dist/slow.lab.js': `exports.cases = [{ name: 'takes 0.4 s', timeoutMs: 2000, run: () => new Promise((r) => setTimeout(r, 400)) }, { name: 'hangs', run: () => new Promise(() => {}) }];`,
    'packages/b/dist/other.lab.js': `exports.cases = [{ name: 'passes', run: () => {} }];`,
  });
  try {
    const all = await runLabFiles(root, findLabFiles(root), 200);
    t.deepEqual(all.map((r) => [r.name, r.ok]), [['a/slow: takes 0.4 s', true], ['a/slow: hangs', false], ['b/other: passes', true]]);
    const some = await runLabFiles(root, findLabFiles(root), 200, /^(a\/slow: takes|b\/)/);
    t.deepEqual(some.map((r) => r.name), ['a/slow: takes 0.4 s', 'b/other: passes']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the lines a passing case returns (what it measured) become its detail, which the TAP carries to the lab log', async (t) => {
  const root = workspace({
    'packages/a/dist/m.lab.js': `exports.cases = [{ name: 'measures', run: async () => ['window 1.5 ms'] }, { name: 'quiet', run: () => {} }];`,
  });
  try {
    const reports = await runLabFiles(root, findLabFiles(root), 2000);
    t.deepEqual(reports, [
      { name: 'a/m: measures', ok: true, detail: ['window 1.5 ms'] },
      { name: 'a/m: quiet', ok: true },
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
