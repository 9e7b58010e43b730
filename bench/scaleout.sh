#!/usr/bin/env bash
# bonded backend comparison: fs+SQLite vs S3+PostgreSQL (one node each), and aggregate pull with
# 32 clients against 1 vs 3 S3+PostgreSQL nodes. See bench/README.md ("Scale-out").
#   bench/scaleout.sh
# Knobs (environment): BENCH_REPS (2), BENCH_BIG_MIB (256), BENCH_AGG_MIB (64), BENCH_CLIENTS (32),
# BENCH_NODES (3), BENCH_WRK_SECS (5), BENCH_BONDED_BIN=path, BENCH_SKIP_BUILD=1, BENCH_KEEP=1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

for t in curl wrk psql python3; do
  command -v "$t" >/dev/null || { echo "scaleout.sh: $t is missing" >&2; exit 1; }
done

if [[ -z "${BENCH_BONDED_BIN:-}" && -z "${BENCH_SKIP_BUILD:-}" ]]; then
  bin="$root/target/release/bonded"
  if [[ ! -x "$bin" ]] || [[ -n "$(find Cargo.toml Cargo.lock crates -newer "$bin" -type f \
        \( -name '*.rs' -o -name '*.toml' -o -name '*.sql' -o -name Cargo.lock \) -print -quit)" ]]; then
    echo "building: cargo build --release -p bonded"
    cargo build --release -p bonded
  fi
fi

# Backing services (both scripts are idempotent and reuse a running instance).
eval "$("$root/scripts/garage.sh")"
"$root/scripts/postgres.sh"

pg_admin=postgres://postgres@127.0.0.1:5432/test
run_id="$(date +%s)_$$"
db="bonded_bench_${run_id}"
export BENCH_DB_URL="postgres://postgres@127.0.0.1:5432/${db}"
export BENCH_S3_PREFIX="bench-${run_id}"
psql "$pg_admin" -qc "CREATE DATABASE ${db}" >/dev/null

pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >/dev/null 2>&1 || echo "scaleout.sh: could not drop database ${db}" >&2
  # Best effort: remove the run's objects from the bucket if an aws CLI is at hand.
  if command -v aws >/dev/null 2>&1; then
    timeout 60 aws --endpoint-url "$BONDED_TEST_S3_ENDPOINT" --region "$BONDED_TEST_S3_REGION" \
      s3 rm --recursive --quiet "s3://${BONDED_TEST_S3_BUCKET}/${BENCH_S3_PREFIX}/" >/dev/null 2>&1 ||
      echo "scaleout.sh: objects under s3://${BONDED_TEST_S3_BUCKET}/${BENCH_S3_PREFIX}/ left in place" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
python3 -u "$here/scaleout.py" "$@" &
pid=$!
wait "$pid"
