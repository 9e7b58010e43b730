#!/usr/bin/env bash
# Server-path vulnerability rescan benchmark: N stored artifacts with signed SBOMs of 300
# components rescanned by `bonded vulndb rescan` after an import of a 200,000-advisory database
# changed the generation. See bench/vulnscan.py and bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BENCH_BONDED_BIN:-}" ] && [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release -p bonded >&2
fi
exec python3 bench/vulnscan.py
