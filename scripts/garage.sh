#!/usr/bin/env bash
# Runs a single-node Garage (an S3-compatible object store) on loopback for bonded's S3 tests
# (crates/storage), installing it first if needed. Idempotent: a running instance is reused.
#
#   eval "$(scripts/garage.sh)"       # start (or reuse) it and export the test variables
#   scripts/garage.sh stop            # stop it (data stays under $BONDED_GARAGE_DIR)
#
# Prints only `export` lines on stdout (everything else goes to stderr), setting
# BONDED_TEST_S3_ENDPOINT, BONDED_TEST_S3_BUCKET, BONDED_TEST_S3_REGION, AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY. The keys are fixed test values: this instance is for tests only.
#
# Environment: BONDED_GARAGE_DIR (default /tmp/bonded-garage) holds config, data, metadata, log
# and pid file; BONDED_TOOLS (default /opt/bonded-tools) is where Garage is installed. Building
# Garage from crates.io takes 10+ minutes on two cores, once per machine.
set -euo pipefail

log() { echo "garage.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

GARAGE_VERSION=2.5.0
TOOLS=${BONDED_TOOLS:-/opt/bonded-tools}
GARAGE=$TOOLS/bin/garage
DIR=${BONDED_GARAGE_DIR:-/tmp/bonded-garage}
CONFIG=$DIR/garage.toml
PIDFILE=$DIR/garage.pid
S3_ADDR=127.0.0.1:3900
RPC_ADDR=127.0.0.1:3901
ADMIN_ADDR=127.0.0.1:3903
REGION=garage
BUCKET=bonded-test
# Garage's formats: a key id is GK + 24 hex digits, a secret 64 hex digits.
ACCESS_KEY=GKb0dded0000000000000000a1
SECRET_KEY=b0dded00000000000000000000000000000000000000000000000000000000a1
RPC_SECRET=b0dded00000000000000000000000000000000000000000000000000000000ff

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

if [ "${1:-}" = stop ]; then
    if running; then
        pid=$(cat "$PIDFILE")
        log "stopping Garage (pid $pid)"
        kill "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE"
    exit 0
fi
[ $# -eq 0 ] || die "usage: eval \"\$($0)\"  |  $0 stop"

install_garage() {
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to install Garage"
    mkdir -p "$TOOLS"
    # Serialise concurrent installs; the one waiting re-checks afterwards.
    exec 9>"$TOOLS/.garage-install.lock"
    flock 9
    if [ ! -x "$GARAGE" ]; then
        log "installing Garage $GARAGE_VERSION into $TOOLS (10+ minutes; log: $TOOLS/garage-install.log)"
        if ! cargo install garage --version "$GARAGE_VERSION" --locked --no-default-features \
            --features bundled-libs,lmdb --root "$TOOLS" >"$TOOLS/garage-install.log" 2>&1; then
            tail -n 30 "$TOOLS/garage-install.log" >&2
            die "cargo install garage failed (full log: $TOOLS/garage-install.log)"
        fi
    fi
    flock -u 9
}

# Any HTTP answer on the S3 port, and the default bucket visible through the admin CLI.
ready() {
    curl -s -o /dev/null --max-time 2 "http://$S3_ADDR/" &&
        "$GARAGE" -c "$CONFIG" bucket info "$BUCKET" >/dev/null 2>&1
}

start_garage() {
    mkdir -p "$DIR/meta" "$DIR/data"
    umask 077
    cat >"$CONFIG" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "$RPC_ADDR"
rpc_public_addr = "$RPC_ADDR"
rpc_secret = "$RPC_SECRET"

[s3_api]
api_bind_addr = "$S3_ADDR"
s3_region = "$REGION"

[admin]
api_bind_addr = "$ADMIN_ADDR"
EOF
    log "starting Garage on $S3_ADDR (data and log under $DIR)"
    GARAGE_DEFAULT_ACCESS_KEY=$ACCESS_KEY GARAGE_DEFAULT_SECRET_KEY=$SECRET_KEY \
        GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=${RUST_LOG:-garage=info} \
        setsid "$GARAGE" -c "$CONFIG" server --single-node --default-bucket \
        </dev/null >>"$DIR/garage.log" 2>&1 &
    echo $! >"$PIDFILE"
}

command -v curl >/dev/null 2>&1 || die "curl is needed to check that Garage answers"
[ -x "$GARAGE" ] || install_garage

if running && ready; then
    log "Garage is already running (pid $(cat "$PIDFILE"))"
else
    if running; then
        log "Garage (pid $(cat "$PIDFILE")) is starting; waiting for it"
    else
        start_garage
    fi
    for _ in $(seq 300); do
        ready && break
        running || {
            tail -n 30 "$DIR/garage.log" >&2
            die "Garage exited (log: $DIR/garage.log)"
        }
        sleep 0.1
    done
    ready || die "Garage did not answer on $S3_ADDR within 30 s (log: $DIR/garage.log)"
    log "Garage is up (pid $(cat "$PIDFILE"))"
fi

cat <<EOF
export BONDED_TEST_S3_ENDPOINT=http://$S3_ADDR
export BONDED_TEST_S3_BUCKET=$BUCKET
export BONDED_TEST_S3_REGION=$REGION
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
EOF
