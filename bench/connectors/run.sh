#!/usr/bin/env bash
# The SINK_ES / SINK_FC benchmark of issue 11 in one command: starts osmem-server on a private
# port (scripts/services.sh, service `es` only), builds and starts a release `sluice serve`
# (default configuration, fresh data dir under bench/out/), builds connbench, and runs bench.py:
# RUNS rounds each of the direct baseline, the live connector and the sink alone, for ES and
# then FC; prints the table and writes it to bench/out/connectors.md.
#
#   bash bench/connectors/run.sh            # ROWS=1000000 RUNS=3 by default
#   bash bench/connectors/run.sh es         # only ES (or: fc)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export ROWS="${ROWS:-1000000}" RUNS="${RUNS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
BENCH_TARGET="${BENCH_TARGET:-/root/.cache/sluice/target-bench}"

cargo build --release -q -p sluice
(cd "$here/connbench" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release -q)
export CONNBENCH="$BENCH_TARGET/release/connbench"
venv="$(bash scripts/test.sh venv | awk '/^venv:/ {print $2}')"
py="$venv/bin/python"
[ -x "$py" ] || { echo "no python venv at $venv" >&2; exit 1; }

# shellcheck source=../../scripts/services.sh
source scripts/services.sh
SLUICE_SERVICES=(es)
mkdir -p bench/out
data="$(mktemp -d "$root/bench/out/connectors.XXXXXX")"   # a real disk: fsync on tmpfs means nothing
sluice_pid=""
cleanup() {
  if [ -n "$sluice_pid" ]; then kill "$sluice_pid" 2>/dev/null || true; wait "$sluice_pid" 2>/dev/null || true; fi
  services_stop
  rm -rf "$data"
}
trap cleanup EXIT
services_start
export ES_PID="$(cat "$SLUICE_TEST_ES_DIR/daemon.pid")"

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" \
  --access-id sluiceCompatId --access-key sluiceCompatKey0123456789 >"$data/sluice.log" 2>&1 &
sluice_pid=$!
export SLUICE_PID="$sluice_pid"
export SLUICE_ENDPOINT="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$SLUICE_ENDPOINT/health" >/dev/null && break; sleep 0.1; done

"$py" "$here/bench.py" "$@"
