#!/usr/bin/env bash
# Issue 12, put tail latency: the core benchmark (no JetStream) for two server binaries, one after
# the other, in one invocation; then both again.
# usage: bench/issue12_latency_before_after.sh BEFORE_SLUICE AFTER_SLUICE
#   SLUICE_BENCH  the sluice-bench binary (default: $CARGO_TARGET_DIR/release/sluice-bench)
set -u
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_SLUICE AFTER_SLUICE" >&2; exit 2; }
cd "$(dirname "$0")/.."
B=${SLUICE_BENCH:-${CARGO_TARGET_DIR:-target}/release/sluice-bench}
common=(--work-dir bench/out/work --skip-nats --records 1000000 --json-records 500000 --latency-repeats 3)
echo "load at start: $(uptime)"; date -u
for round in 1 2; do
  echo "== round $round: before ($1)"; date -u; echo "load: $(uptime)"
  "$B" --sluice-bin "$1" --out "bench/out/lat-before-$round/report.md" "${common[@]}"
  echo "== round $round: after ($2)"; date -u; echo "load: $(uptime)"
  "$B" --sluice-bin "$2" --out "bench/out/lat-after-$round/report.md" "${common[@]}"
done
echo "load at end: $(uptime)"; date -u
