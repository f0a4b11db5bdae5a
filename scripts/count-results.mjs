#!/usr/bin/env node
// Adds up the results of every suite in a test log and prints the closing
// line CI reads: "N passed, N failed".
//   ava --tap and the lab runner:  "# pass N" / "# fail N"
//   cargo test:                    "test result: ok. N passed; M failed; ..."
// Lines may carry turbo's "package:task: " prefix.
import { readFileSync } from 'node:fs';

const log = readFileSync(process.argv[2] ?? 0, 'utf8');
let passed = 0;
let failed = 0;
let suites = 0;
for (const line of log.split('\n')) {
  let m = /#\s+pass\s+(\d+)\s*$/.exec(line);
  if (m) { passed += Number(m[1]); suites += 1; continue; }
  m = /#\s+fail\s+(\d+)\s*$/.exec(line);
  if (m) { failed += Number(m[1]); continue; }
  m = /test result: \w+\. (\d+) passed; (\d+) failed/.exec(line);
  if (m) { passed += Number(m[1]); failed += Number(m[2]); suites += 1; }
}
process.stderr.write(`(${suites} suites counted)\n`);
process.stdout.write(`${passed} passed, ${failed} failed\n`);
