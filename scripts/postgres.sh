#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 with trust auth for role postgres and a
# database `test` (what the tests use). Starts the machine's cluster if it is down; installs the
# Debian packages if PostgreSQL is missing. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
url=${BONDED_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

ready() { psql "$url" -qtAc 'select 1' >/dev/null 2>&1; }
ready && exit 0

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql postgresql-client >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
conf=/etc/postgresql/$version/main
# Loopback only, trust for local test connections.
grep -q "^listen_addresses = 'localhost'" "$conf/postgresql.conf" ||
    echo "listen_addresses = 'localhost'" >>"$conf/postgresql.conf"
grep -q "bonded-tests" "$conf/pg_hba.conf" ||
    sed -i '1i host all all 127.0.0.1/32 trust # bonded-tests\nlocal all all trust # bonded-tests' "$conf/pg_hba.conf"
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 30); do
    if psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'select 1' >/dev/null 2>&1; then
        psql -h 127.0.0.1 -U postgres -d postgres -qtAc "select 1 from pg_database where datname='test'" | grep -q 1 ||
            psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
        ready && exit 0
    fi
    sleep 1
done
echo "postgres.sh: PostgreSQL does not answer at $url" >&2
exit 1
