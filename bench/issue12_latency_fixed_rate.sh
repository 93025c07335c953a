#!/usr/bin/env bash
# Issue 12, put tail latency: protobuf and JSON at one fixed rate (default 450,000 records/s), the
# branch's base and the branch alternating, ROUNDS rounds (default 3). Paths of this session.
set -u
cd "$(dirname "$0")/.."
T=/work/target-latency
B=$T/release/sluice-bench
rate=${RATE:-450000}
for round in $(seq 1 "${ROUNDS:-3}"); do
  for which in before after; do
    bin=$T/ab/sluice-after; [ $which = before ] && bin=$T/ab/sluice-base-dbg
    echo "== round $round $which: $(uptime)"
    $B --sluice-bin "$bin" --work-dir bench/out/work --out "bench/out/fixed-$which-$round/report.md" \
      --protocols protobuf,json --latency-rate "$rate" --latency-repeats 1 2>/dev/null | grep -E "^\| (protobuf|JSON) "
  done
done
echo "== end: $(uptime)"
