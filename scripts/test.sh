#!/usr/bin/env bash
# The whole test suite: installs the real clients the tests drive (skopeo, oras), then runs
# every unit, router, conformance, interop, crash and large-blob test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
