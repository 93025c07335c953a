#!/usr/bin/env bash
# Memory under worst-case puts (issue 7, finding 5): builds this checkout's sluice (release),
# optionally builds a second one from a git ref, runs memory_bench.py against each, one after
# the other, and writes bench/out/memory.md.
#
#   bench/memory/run.sh                 # this checkout only
#   bench/memory/run.sh main            # before = the `main` ref, after = this checkout
#   SLUICE_BEFORE_BIN=/path/to/sluice bench/memory/run.sh    # before = a binary you have
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target-bench}"
out="$root/bench/out"
mkdir -p "$out"

echo "== building sluice (release) into $CARGO_TARGET_DIR"
(cd "$root" && cargo build --release -p sluice)
after="$out/sluice-after"
cp "$CARGO_TARGET_DIR/release/sluice" "$after"

before="${SLUICE_BEFORE_BIN:-}"
if [ -z "$before" ] && [ $# -ge 1 ]; then
  ref="$1"
  wt="$out/before-src"
  rm -rf "$wt"; git -C "$root" worktree prune
  git -C "$root" worktree add --detach "$wt" "$ref" >/dev/null
  echo "== building sluice at $ref"
  (cd "$wt" && cargo build --release -p sluice)
  before="$out/sluice-before"
  cp "$CARGO_TARGET_DIR/release/sluice" "$before"
  git -C "$root" worktree remove --force "$wt"
fi

{
  echo "# Memory under worst-case puts ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
  echo
  if [ -n "$before" ]; then
    python3 "$here/memory_bench.py" "$before" --label "before ($before)"
  fi
  python3 "$here/memory_bench.py" "$after" --label "after (this checkout)"
} | tee "$out/memory.md"
