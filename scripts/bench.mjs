#!/usr/bin/env node
// `pnpm bench`: every package's benchmark, one after another (two running at
// once would each time the other's load), then one closing table of every
// figure that has a target, each row marked ok or MISS.
//
// A benchmark reports a row by appending one JSON line
// {bench, name, value, target, ok} to the file named in VFIOKIT_BENCH_ROWS;
// what it prints besides is its own. Arguments go to turbo, so
// `pnpm bench --filter=@vfiokit/core` runs one package's.
//
// The exit status is turbo's (a benchmark that crashed fails); a MISS does
// not fail the command: timings on a shared machine are evidence to read, not
// a test (the project runs no timed tests).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'vfiokit-bench-'));
const rowsFile = join(dir, 'rows.jsonl');
let status = 1;
let rows = [];
try {
  const r = spawnSync('pnpm', ['exec', 'turbo', 'run', 'bench', '--concurrency=1', ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, VFIOKIT_BENCH_ROWS: rowsFile },
  });
  status = r.status ?? 1;
  try {
    rows = readFileSync(rowsFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const w = (k, min) => Math.max(min, ...rows.map((r) => String(r[k]).length));
const [wb, wn, wv] = [w('bench', 5), w('name', 4), w('value', 5)];
console.log(`\nbench summary: every figure with a target (${rows.length} rows)`);
console.log(`  ${'    '} ${'bench'.padEnd(wb)}  ${'figure'.padEnd(wn)}  ${'value'.padStart(wv)}  target`);
for (const r of rows) console.log(`  ${r.ok ? 'ok  ' : 'MISS'} ${r.bench.padEnd(wb)}  ${r.name.padEnd(wn)}  ${r.value.padStart(wv)}  ${r.target}`);
const miss = rows.filter((r) => !r.ok).length;
console.log(`bench: ${rows.length - miss} ok, ${miss} MISS${status === 0 ? '' : `; a benchmark failed (turbo exited ${status})`}`);
process.exit(status);
