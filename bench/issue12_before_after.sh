#!/usr/bin/env bash
set -u
cd /work/wt-bench12
T=/work/target-bench12/release
common=(--work-dir bench/out/work --nats-writers 4 --records 1000000 --json-records 500000 --latency-repeats 3)
echo "load at start: $(uptime)"
echo "== before (main cd9755c)"; date -u
$T/sluice-bench --sluice-bin /work/target-main/release/sluice --out bench/out/before.md --skip-nats "${common[@]}"
echo "load: $(uptime)"
echo "== after (s11-bench12)"; date -u
$T/sluice-bench --sluice-bin $T/sluice --out bench/out/after.md --nats-durable-bin bench/out/nats-venv/bin/nats-server "${common[@]}"
echo "load at end: $(uptime)"; date -u
