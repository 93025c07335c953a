#!/usr/bin/env bash
# The cluster shard log benchmark (bench/cluster/README.md): appends/s of PgShardStore on one
# hot shard and on 16 shards (100 × 100 B records per put), against the local ShardLog (fsync
# always) in the same run. PostgreSQL is a SINGLE node here (not the HA test bed): once as
# scripts/services.sh starts it for the tests (fsync=off), once private with the defaults
# (fsync=on, synchronous_commit=on, no standby).
#
# usage: CARGO_TARGET_DIR=... bash bench/cluster/run.sh [seconds per scenario, default 10]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SECS="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
cargo build --release -q -p sluice-cluster --example log_bench
BENCH="$CARGO_TARGET_DIR/release/examples/log_bench"

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
SLUICE_SERVICES=(postgres)
DURABLE_DIR=""
cleanup() {
  if [ -n "$DURABLE_DIR" ]; then
    runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$DURABLE_DIR/data" -m fast stop \
      </dev/null >/dev/null 2>&1 || true
  fi
  services_stop
}
trap cleanup EXIT
services_start
FAST_PID="$(head -1 "$SLUICE_TEST_PG_DIR/data/postmaster.pid")"

# A second, private server with PostgreSQL's durable defaults.
DURABLE_DIR="$SLUICE_SERVICES_DIR/postgres-durable"
mkdir -p "$DURABLE_DIR" && chown postgres: "$DURABLE_DIR"
runuser -u postgres -- "$(pg_bin initdb)" -D "$DURABLE_DIR/data" -A trust -U postgres \
  </dev/null >"$DURABLE_DIR/initdb.log" 2>&1
DURABLE_PORT="$(services_free_port)"
runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$DURABLE_DIR/data" -l "$DURABLE_DIR/server.log" \
  -o "-c listen_addresses=127.0.0.1 -p $DURABLE_PORT -k $DURABLE_DIR -c max_connections=300" \
  start </dev/null >/dev/null
DURABLE_PID="$(head -1 "$DURABLE_DIR/data/postmaster.pid")"
psql -X -q -h 127.0.0.1 -p "$DURABLE_PORT" -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null

echo "== $(date -u +%FT%TZ) $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== PostgreSQL $(psql -X -At -h 127.0.0.1 -p "$DURABLE_PORT" -U postgres -d postgres -c 'SHOW server_version'), single node"
echo "== 1. services.sh PostgreSQL (fsync=off), with the local ShardLog baseline"
"$BENCH" "$SLUICE_TEST_PG_URL" "$SECS" "$FAST_PID"
echo "== 2. private PostgreSQL with durable defaults (fsync=on, synchronous_commit=on)"
"$BENCH" "postgres://postgres@127.0.0.1:$DURABLE_PORT/bench" "$SECS" "$DURABLE_PID" no-local
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
