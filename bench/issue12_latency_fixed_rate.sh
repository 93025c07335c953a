#!/usr/bin/env bash
# Issue 12, put tail latency: protobuf and JSON at one fixed rate (RATE, default 450,000 records/s),
# two server binaries alternating, ROUNDS rounds (default 3).
# usage: bench/issue12_latency_fixed_rate.sh BEFORE_SLUICE AFTER_SLUICE
#   SLUICE_BENCH  the sluice-bench binary (default: $CARGO_TARGET_DIR/release/sluice-bench)
set -u
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_SLUICE AFTER_SLUICE" >&2; exit 2; }
cd "$(dirname "$0")/.."
B=${SLUICE_BENCH:-${CARGO_TARGET_DIR:-target}/release/sluice-bench}
rate=${RATE:-450000}
for round in $(seq 1 "${ROUNDS:-3}"); do
  for which in before after; do
    bin=$2; [ $which = before ] && bin=$1
    echo "== round $round $which: $(uptime)"
    "$B" --sluice-bin "$bin" --work-dir bench/out/work --out "bench/out/fixed-$which-$round/report.md" \
      --protocols protobuf,json --latency-rate "$rate" --latency-repeats 1 2>/dev/null | grep -E "^\| (protobuf|JSON) "
  done
done
echo "== end: $(uptime)"
