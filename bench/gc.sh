#!/usr/bin/env bash
# Garbage-collection benchmark: mark/sweep time over 1,000,000 blob rows (10 % unreferenced) and
# push/pull latency during a collection vs idle. See bench/gc.py and bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BENCH_BONDED_BIN:-}" ] && [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release -p bonded >&2
fi
exec python3 bench/gc.py
