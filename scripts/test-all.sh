#!/usr/bin/env bash
# Every test: all the unit suites (each one runs even when another fails, so
# the closing count covers everything), the release check, then the lab on a
# real kernel.
set -u
cd "$(dirname "$0")/.."
status=0
pnpm exec turbo run test --continue || status=1
# The packages as npm users get them: built for every triple, packed,
# installed with plain npm outside the clone (packages/testkit/src/release).
pnpm release:check || status=1
pnpm lab || status=1
exit "$status"
