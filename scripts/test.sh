#!/usr/bin/env bash
# The whole test suite. Installs and starts what the tests drive — skopeo and the oras SDK, a
# PostgreSQL server, a Garage S3 server on loopback — then runs every test on the embedded
# backend pair (filesystem + SQLite), and the end-to-end suite again on S3 + PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh
scripts/postgres.sh
eval "$(scripts/garage.sh)"

run() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --no-fail-fast "$@"
    else
        cargo test --no-fail-fast "$@"
    fi
}

echo "== all tests, end-to-end suite on fs + SQLite"
BONDED_TEST_BACKEND=fs-sqlite run --workspace

# The same --workspace selection as above (narrowed by a filter) keeps cargo's feature
# resolution, so nothing is rebuilt between the phases.
echo "== end-to-end suite on S3 (Garage) + PostgreSQL"
if cargo nextest --version >/dev/null 2>&1; then
    BONDED_TEST_BACKEND=s3-postgres run --workspace -E 'package(bonded) and kind(test)'
else
    BONDED_TEST_BACKEND=s3-postgres run -p bonded --test '*'
fi

echo "== OCI conformance with access control on (authenticating as the admin)"
if cargo nextest --version >/dev/null 2>&1; then
    BONDED_TEST_AUTH=on run --workspace -E 'package(bonded) and binary(conformance)'
else
    BONDED_TEST_AUTH=on run -p bonded --test conformance
fi
