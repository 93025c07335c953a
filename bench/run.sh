#!/usr/bin/env bash
# Builds the server and the load generator (release), makes sure nats-server is there, runs the
# whole benchmark and writes bench/out/report.md. Extra arguments go to sluice-bench
# (e.g. --records 500000 --skip-nats; see `sluice-bench --help`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target-bench}"

echo "== building sluice (release) into $CARGO_TARGET_DIR"
(cd "$root" && cargo build --release -p sluice)
echo "== building sluice-bench (release)"
(cd "$here" && cargo build --release)

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "== installing nats-server (Debian) for the JetStream baseline"
  if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y nats-server >/dev/null || { apt-get update >/dev/null && apt-get install -y nats-server >/dev/null; } \
      || echo "could not install nats-server; the baseline will be skipped"
  fi
fi

mkdir -p "$here/out"
cd "$root"
"$CARGO_TARGET_DIR/release/sluice-bench" \
  --sluice-bin "$CARGO_TARGET_DIR/release/sluice" \
  --work-dir "$here/out/work" \
  --out "$here/out/report.md" \
  --nats-writers 4 \
  "$@"
