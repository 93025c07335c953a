#!/usr/bin/env bash
# SINK_OTS benchmark in one command: builds and starts a release `sluice serve` and the Tablestore
# test server (compat/ots_server.py, on the official `tablestore` package) as its own process, then
# in one session runs bench_ots.py connector (RUNS times) and bench_ots.py ceiling (the server's
# own limit with pre-encoded requests), printing `uptime` before and after.
#
#   bash bench/ots/run.sh            # ROWS=200000 RUNS=2 by default
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
RUNS="${RUNS:-2}"
export ROWS="${ROWS:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"

cargo build --release -q -p sluice
venv="$(bash scripts/test.sh venv | awk '/^venv:/ {print $2}')"
py="$venv/bin/python"
[ -x "$py" ] || { echo "no python venv at $venv" >&2; exit 1; }

data="$(mktemp -d /tmp/sluice-otsbench.XXXXXX)"
sluice_pid=""
ots_pid=""
cleanup() {
  [ -n "$sluice_pid" ] && kill "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null
  [ -n "$ots_pid" ] && kill "$ots_pid" 2>/dev/null && wait "$ots_pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ots_port="$(free_port)"
"$py" compat/ots_server.py --port "$ots_port" >"$data/ots.log" 2>&1 &
ots_pid=$!
port="$(free_port)"
"${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" \
  --access-id sluiceCompatId --access-key sluiceCompatKey0123456789 >"$data/sluice.log" 2>&1 &
sluice_pid=$!
export SLUICE_PID="$sluice_pid" OTS_PID="$ots_pid"
export SLUICE_ENDPOINT="http://127.0.0.1:$port" OTS_ENDPOINT="http://127.0.0.1:$ots_port"
for _ in $(seq 100); do curl -fs "$SLUICE_ENDPOINT/health" >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do grep -q listening "$data/ots.log" && break; sleep 0.1; done

echo "== $(uptime)"
for _ in $(seq "$RUNS"); do
  "$py" "$here/bench_ots.py" connector 2>&1 | grep -v "^Native"
done
"$py" "$here/bench_ots.py" ceiling 2>&1 | grep -v "^Native"
echo "== $(uptime)"
