#!/usr/bin/env bash
# Server CPU per record put with metrics recording on and off, in the same run (issue 13):
# builds this checkout's sluice (release) and runs metrics_cpu.py, writing bench/out/metrics.md.
#
#   bench/metrics/run.sh [--repeats 5] [--records 200000]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target-bench}"
out="$root/bench/out"
mkdir -p "$out/work"

echo "== building sluice (release) into $CARGO_TARGET_DIR"
(cd "$root" && cargo build --release -p sluice)
{
  echo "# Metrics recording cost ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
  echo
  python3 "$here/metrics_cpu.py" "$CARGO_TARGET_DIR/release/sluice" --work-dir "$out/work" "$@"
} | tee "$out/metrics.md"
