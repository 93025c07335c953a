#!/usr/bin/env bash
# Connector end to end vs the sink alone, two server binaries in one session (issue 12 item 5):
# starts MariaDB and PostgreSQL (scripts/services.sh), one `sluice serve` per binary, then per
# database RUNS connector runs alternating before/after (bench_connector.py throughput, with the
# server's CPU seconds), then sinkbench's baseline and sink rounds against the same database
# servers. Prints every figure with the load average.
#
#   bash bench/db/before_after.sh BEFORE_BIN AFTER_BIN     # RUNS=3 KINDS="postgres mysql"
#
# sinkbench is built from this tree (its sink code is the "after" one) into $SINKBENCH_TARGET.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
before="$1"
after="$2"
RUNS="${RUNS:-3}"
KINDS="${KINDS:-postgres mysql}"
export ROWS="${ROWS:-1000000}"
SINKBENCH_TARGET="${SINKBENCH_TARGET:-/root/.cache/sluice/target-sinkbench}"
(cd "$here/sinkbench" && CARGO_TARGET_DIR="$SINKBENCH_TARGET" cargo build --release -q)
venv="$(bash scripts/test.sh venv | awk '/^venv:/ {print $2}')"
py="$venv/bin/python"

# shellcheck source=../../scripts/services.sh
source scripts/services.sh
SLUICE_SERVICES=(mysql postgres)
data="$(mktemp -d /tmp/sluice-dbba.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  services_stop
  rm -rf "$data"
}
trap cleanup EXIT
services_start

declare -A endpoint pid
for which in before after; do
  bin="$before"; [ "$which" = after ] && bin="$after"
  port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data/$which" \
    --access-id sluiceCompatId --access-key sluiceCompatKey0123456789 >"$data/$which.log" 2>&1 &
  pids+=("$!")
  pid[$which]=$!
  endpoint[$which]="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "${endpoint[$which]}/health" >/dev/null && break; sleep 0.1; done
done

for kind in $KINDS; do
  echo "== $kind connector, $(uptime)"
  for i in $(seq "$RUNS"); do
    for which in before after; do
      printf '%-6s ' "$which"
      SLUICE_ENDPOINT="${endpoint[$which]}" SLUICE_PID="${pid[$which]}" \
        "$py" "$here/bench_connector.py" throughput "$kind" | grep connector
    done
  done
  echo "== $kind sinkbench, $(uptime)"
  "$SINKBENCH_TARGET/release/sinkbench" "$kind" "$ROWS" 4 5000
done
echo "== end, $(uptime)"
