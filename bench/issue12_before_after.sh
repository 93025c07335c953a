#!/usr/bin/env bash
# Issue 12: the full benchmark for two server binaries in one invocation (BEFORE without JetStream,
# AFTER with the durable JetStream peer), so both sets of figures come from one session.
# usage: bench/issue12_before_after.sh BEFORE_SLUICE AFTER_SLUICE
#   SLUICE_BENCH  the sluice-bench binary (default: $CARGO_TARGET_DIR/release/sluice-bench)
#   NATS_DURABLE  nats-server 2.10+ for the durable peer (default: bench/out/nats-venv/bin/nats-server)
set -u
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_SLUICE AFTER_SLUICE" >&2; exit 2; }
cd "$(dirname "$0")/.."
B=${SLUICE_BENCH:-${CARGO_TARGET_DIR:-target}/release/sluice-bench}
common=(--work-dir bench/out/work --nats-writers 4 --records 1000000 --json-records 500000 --latency-repeats 3)
echo "load at start: $(uptime)"
echo "== before ($1)"; date -u
"$B" --sluice-bin "$1" --out bench/out/before.md --skip-nats "${common[@]}"
echo "load: $(uptime)"
echo "== after ($2)"; date -u
"$B" --sluice-bin "$2" --out bench/out/after.md --nats-durable-bin "${NATS_DURABLE:-bench/out/nats-venv/bin/nats-server}" "${common[@]}"
echo "load at end: $(uptime)"; date -u
