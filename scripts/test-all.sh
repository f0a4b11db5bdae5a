#!/usr/bin/env bash
# Every test: the linter, all the unit suites (each one runs even when another
# fails, so the closing count covers everything), the release check, then the
# lab on a real kernel.
set -u
cd "$(dirname "$0")/.."
status=0
# The linter first (Biome, biome.jsonc; seconds), as one TAP result the
# closing count adds up. tsc's checks run with the tests (ts-node) and in
# `pnpm lint`.
if pnpm exec biome lint --error-on-warnings; then lint='ok 1 - biome lint finds nothing'; lint_pass=1; else lint='not ok 1 - biome lint finds problems (listed above)'; lint_pass=0; status=1; fi
printf 'TAP version 13\n%s\n1..1\n# pass %d\n# fail %d\n' "$lint" "$lint_pass" "$((1 - lint_pass))"
# Two suites at a time, one per core: the suites start real QEMUs, a real
# kube-apiserver and many CLI processes, and with turbo's default of ten at
# once on a 2-core machine the slowest cases ran into their timeouts.
pnpm exec turbo run test --continue --concurrency=2 || status=1
# The packages as npm users get them: built for every triple, packed,
# installed with plain npm outside the clone (packages/testkit/src/release).
pnpm release:check || status=1
pnpm lab || status=1
exit "$status"
