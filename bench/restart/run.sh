#!/usr/bin/env bash
# Restart time (issue 12, item 7): builds this checkout's sluice and the log_bench example
# (release), optionally takes a `before` binary, and runs restart_bench.py, writing
# bench/out/restart.md. The issue's data set is 10 GB in 400 shards with 8 MiB segments:
#
#   bench/restart/run.sh                          # 2 GB, this checkout only
#   GB=10 SLUICE_BEFORE_BIN=/path/to/old/sluice bench/restart/run.sh
#   GB=10 WORK=/big/disk/dir REUSE=1 bench/restart/run.sh   # again on the data left in WORK
#
# Needs about GB * 1.01 of free disk under ${WORK:-a new temp dir}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target-bench}"
out="$root/bench/out"
mkdir -p "$out"
(cd "$root" && cargo build --release -p sluice && cargo build --release -p sluice-log --example log_bench)
after="$out/sluice-after"
cp "$CARGO_TARGET_DIR/release/sluice" "$after"
before=()
if [ -n "${SLUICE_BEFORE_BIN:-}" ]; then before=(--before "$SLUICE_BEFORE_BIN"); fi
work=()
if [ -n "${WORK:-}" ]; then work=(--work "$WORK"); fi
# REUSE=1 (with WORK): measure the data an earlier run left in $WORK instead of filling anew
if [ -n "${REUSE:-}" ]; then work+=(--reuse); fi
{
  echo "# Restart ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  python3 "$here/restart_bench.py" --after "$after" "${before[@]}" \
    --log-bench "$CARGO_TARGET_DIR/release/examples/log_bench" \
    --gb "${GB:-2}" --shards "${SHARDS:-400}" --payload "${PAYLOAD:-1000}" \
    --segment-bytes "${SEGMENT_BYTES:-8388608}" "${work[@]}"
  echo
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/restart.md"
