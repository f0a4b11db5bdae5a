#!/usr/bin/env node
// Adds up the results of every suite in a test log and prints the closing
// line CI reads: "N passed, N failed, N skipped".
//   ava --tap and the lab runner:  "# pass N" / "# skip N" / "# fail N"
//                                  (a skipped test is "ok N - title # SKIP")
//   cargo test:                    "test result: ok. N passed; M failed; K ignored; ..."
// Lines may carry turbo's "package:task: " prefix. A skip is neither a pass
// nor a failure, so it is counted apart rather than vanishing from the line.
import { readFileSync } from 'node:fs';

export function countResults(log) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  let suites = 0;
  for (const line of log.split('\n')) {
    let m = /#\s+pass\s+(\d+)\s*$/.exec(line);
    if (m) { passed += Number(m[1]); suites += 1; continue; }
    m = /#\s+fail\s+(\d+)\s*$/.exec(line);
    if (m) { failed += Number(m[1]); continue; }
    m = /#\s+skip\s+(\d+)\s*$/.exec(line);
    if (m) { skipped += Number(m[1]); continue; }
    m = /test result: \w+\. (\d+) passed; (\d+) failed(?:; (\d+) ignored)?/.exec(line);
    if (m) { passed += Number(m[1]); failed += Number(m[2]); skipped += Number(m[3] ?? 0); suites += 1; }
  }
  return { passed, failed, skipped, suites };
}

/**
 * The names of the failed tests in a log: TAP's "not ok N - title" lines
 * that are not SKIP or TODO, and cargo's "test path ... FAILED". CI prints
 * them just above its closing line, where a reader of only the log's end
 * still sees which tests failed, not only how many.
 */
export function failedTests(log) {
  const names = [];
  for (const line of log.split('\n')) {
    let m = /not ok \d+ - (.*)$/.exec(line);
    if (m && !/#\s*(SKIP|TODO)\b/i.test(m[1])) { names.push(m[1].trim()); continue; }
    m = /^(?:\S+:\s)?test (\S+) \.\.\. FAILED\s*$/.exec(line);
    if (m) names.push(m[1]);
  }
  return names;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const log = readFileSync(process.argv[2] ?? 0, 'utf8');
  const { passed, failed, skipped, suites } = countResults(log);
  for (const name of failedTests(log)) process.stderr.write(`failed: ${name}\n`);
  process.stderr.write(`(${suites} suites counted)\n`);
  process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
}
