#!/usr/bin/env bash
# The lake benchmark of issue 10 in one command: starts s3s-fs (scripts/services.sh), builds the
# release server and bench/lake/lakebench, then in one session prints
#   1. lakebench local|s3: the SINK_ODPS writer alone vs the hand-written Parquet baseline
#      (same rows, files and writer settings), ROWS rows over 4 shards, deliveries of BATCH;
#   2. bench_lake.py throughput file|s3: the same rows through a live connector (records put
#      first, not timed; files of LIVE_BATCH records: with the default 1,000,000 a preloaded
#      run smaller than that would only wait for the 60 s age limit), with the server's CPU
#      seconds per million rows;
#   3. bench_lake.py timeliness: 1,000 records/s for DURATION s with default batch settings and
#      connector_odps_minute_ms = MINUTE_MS (a second server), done-time lag and _SUCCESS delay.
#
#   bash bench/lake/run.sh     # ROWS=1000000 BATCH=250000 LIVE_ROWS=400000 LIVE_BATCH=50000
#                              # DURATION=180 MINUTE_MS=4000
#   PARTS="sink live" bash bench/lake/run.sh   # a subset of: sink live timeliness (default: all)
#   SKIP_BUILD=1 ...                           # use the binaries already built
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
ROWS="${ROWS:-1000000}"
BATCH="${BATCH:-250000}"
LIVE_ROWS="${LIVE_ROWS:-400000}"
LIVE_BATCH="${LIVE_BATCH:-50000}"
DURATION="${DURATION:-180}"
MINUTE_MS="${MINUTE_MS:-4000}"
PARTS="${PARTS:-sink live timeliness}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
BENCH_TARGET="${BENCH_TARGET:-$CARGO_TARGET_DIR}"

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -q -p sluice
  (cd "$here/lakebench" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release -q)
fi
venv="$(bash scripts/test.sh venv | awk '/^venv:/ {print $2}')"
py="$venv/bin/python"
[ -x "$py" ] || { echo "no python venv at $venv" >&2; exit 1; }

# shellcheck source=../../scripts/services.sh
source scripts/services.sh
data="$(mktemp -d /tmp/sluice-lakebench.XXXXXX)"
sluice_pid=""
stop_server() {
  if [ -n "$sluice_pid" ]; then kill "$sluice_pid" 2>/dev/null || true; wait "$sluice_pid" 2>/dev/null || true; fi
  sluice_pid=""
}
cleanup() {
  stop_server
  services_stop
  rm -rf "$data" /tmp/sluice-lakebench-*
}
trap cleanup EXIT
SLUICE_SERVICES=(s3)  # only s3s-fs is needed here
services_start

start_server() { # $1: config file (may be empty)
  port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  rm -rf "$data/sluice"
  "${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" \
    --access-id sluiceCompatId --access-key sluiceCompatKey0123456789 ${1:+--config "$1"} \
    >>"$data/sluice.log" 2>&1 &
  sluice_pid=$!
  export SLUICE_PID="$sluice_pid" SLUICE_ENDPOINT="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$SLUICE_ENDPOINT/health" >/dev/null && break; sleep 0.1; done
}

part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
echo "== $(uptime)"
if part sink; then
  LAKEBENCH_DIR="$data" "$BENCH_TARGET/release/lakebench" local "$ROWS" 4 "$BATCH"
  "$BENCH_TARGET/release/lakebench" s3 "$ROWS" 4 "$BATCH"
  echo "== $(uptime)"
fi
if part live; then
  echo "connector_batch.sink_odps.records = $LIVE_BATCH" >"$data/live.toml"
  start_server "$data/live.toml"
  "$py" "$here/bench_lake.py" throughput file "$LIVE_ROWS"
  "$py" "$here/bench_lake.py" throughput s3 "$LIVE_ROWS"
  stop_server
  echo "== $(uptime)"
fi
if part timeliness; then
  echo "connector_odps_minute_ms = $MINUTE_MS" >"$data/timeliness.toml"
  start_server "$data/timeliness.toml"
  "$py" "$here/bench_lake.py" timeliness "$DURATION" "$data/warehouse" "$MINUTE_MS"
  stop_server
  echo "== $(uptime)"
fi
