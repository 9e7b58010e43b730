#!/usr/bin/env bash
# Manifest GET req/s with access control off vs on (bearer token, HTTP Basic); see auth.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v wrk >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
if [[ -z "${BENCH_BONDED_BIN:-}" ]]; then
  cargo build --release -p bonded
fi
exec python3 bench/auth.py
