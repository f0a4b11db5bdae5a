#!/usr/bin/env bash
# Every test: all the unit suites (each one runs even when another fails, so
# the closing count covers everything), then the lab on a real kernel.
set -u
cd "$(dirname "$0")/.."
status=0
pnpm exec turbo run test --continue || status=1
pnpm lab || status=1
exit "$status"
