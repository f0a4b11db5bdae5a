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

if (import.meta.url === `file://${process.argv[1]}`) {
  const { passed, failed, skipped, suites } = countResults(readFileSync(process.argv[2] ?? 0, 'utf8'));
  process.stderr.write(`(${suites} suites counted)\n`);
  process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
}
