#!/usr/bin/env bash
# The connector benchmark of issue 3 in one command: starts MariaDB and PostgreSQL on private
# ports (scripts/services.sh), builds and starts a release `sluice serve`, then in one session,
# one database after the other (PostgreSQL first):
#   1. bench_connector.py throughput postgres|mysql, RUNS times (1,000,000 rows, 4 shards),
#   2. right after them, sinkbench postgres|mysql 1000000 4 5000 (the bulk baseline and the
#      sink alone, against the same database server),
#   3. at the end, bench_connector.py latency (1,000 records/s into MariaDB for DURATION s),
# and prints every figure; the best connector run is compared with the best sink round.
# Each connector is measured next to its own sink rounds: a database still busy with the rows
# of the runs before (MariaDB purging 3M deleted rows while PostgreSQL is measured, say) would
# otherwise weigh on one side of the comparison only.
#
#   bash bench/db/run.sh            # RUNS=3 DURATION=30 ROWS=1000000 by default
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-30}"
export ROWS="${ROWS:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
BENCH_TARGET="${BENCH_TARGET:-/root/.cache/sluice/target-bench}"

cargo build --release -q -p sluice
(cd "$here/sinkbench" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release -q)
venv="$(bash scripts/test.sh venv | awk '/^venv:/ {print $2}')"
py="$venv/bin/python"
[ -x "$py" ] || { echo "no python venv at $venv" >&2; exit 1; }

# shellcheck source=../../scripts/services.sh
source scripts/services.sh
SLUICE_SERVICES=(mysql postgres)
data="$(mktemp -d /tmp/sluice-dbbench.XXXXXX)"
sluice_pid=""
cleanup() {
  [ -n "$sluice_pid" ] && kill "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null
  services_stop
  rm -rf "$data"
}
trap cleanup EXIT
services_start

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" \
  --access-id sluiceCompatId --access-key sluiceCompatKey0123456789 >"$data/sluice.log" 2>&1 &
sluice_pid=$!
export SLUICE_PID="$sluice_pid"   # bench_connector.py reports the server's CPU seconds per run
export SLUICE_ENDPOINT="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$SLUICE_ENDPOINT/health" >/dev/null && break; sleep 0.1; done

echo "== $(uptime)"
for kind in postgres mysql; do
  for i in $(seq "$RUNS"); do
    "$py" "$here/bench_connector.py" throughput "$kind" | grep connector
  done
  "$BENCH_TARGET/release/sinkbench" "$kind" "$ROWS" 4 5000
  echo "== $(uptime)"
done
DURATION="$DURATION" "$py" "$here/bench_connector.py" latency
echo "== $(uptime)"
