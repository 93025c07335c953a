#!/usr/bin/env bash
# Issue 12, put tail latency: the core benchmark (no JetStream) for the branch's base and for the
# branch, one after the other, in one invocation; then both again. Paths of this session.
set -u
cd "$(dirname "$0")/.."
T=/work/target-latency
B=$T/release/sluice-bench
common=(--work-dir bench/out/work --skip-nats --records 1000000 --json-records 500000 --latency-repeats 3)
echo "load at start: $(uptime)"; date -u
for round in 1 2; do
  echo "== round $round: before (base 9568c7d)"; date -u; echo "load: $(uptime)"
  $B --sluice-bin $T/ab/sluice-base-dbg --out bench/out/lat-before-$round/report.md "${common[@]}"
  echo "== round $round: after (s13-latency)"; date -u; echo "load: $(uptime)"
  $B --sluice-bin $T/ab/sluice-after --out bench/out/lat-after-$round/report.md "${common[@]}"
done
echo "load at end: $(uptime)"; date -u
