#!/usr/bin/env bash
# bonded vs docker-registry benchmark. See bench/README.md.
#   bench/run.sh                      full run (builds target/release/bonded if missing or stale)
#   BENCH_ONLY=docker-registry bench/run.sh    docker-registry only (no build)
# Knobs (environment): BENCH_REPS_A/B/C/D, BENCH_WRK_SECS, BENCH_NTAGS, BENCH_BIG_MIB, BENCH_KEEP=1,
# BENCH_BONDED_BIN=path (use that binary, no build), BENCH_SKIP_BUILD=1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

# Debian tools, installed only when missing.
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# bonded release binary: build when missing or older than any source.
if [[ "${BENCH_ONLY:-}" != "docker-registry" && -z "${BENCH_BONDED_BIN:-}" && -z "${BENCH_SKIP_BUILD:-}" ]]; then
  bin="$root/target/release/bonded"
  if [[ ! -x "$bin" ]] || [[ -n "$(find Cargo.toml Cargo.lock crates -newer "$bin" -type f \
        \( -name '*.rs' -o -name '*.toml' -o -name '*.sql' -o -name Cargo.lock \) -print -quit)" ]]; then
    echo "building: cargo build --release -p bonded"
    cargo build --release -p bonded
  fi
fi

pid=""
cleanup() { if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
python3 -u "$here/bench.py" "$@" &
pid=$!
wait "$pid"
