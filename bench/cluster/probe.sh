#!/usr/bin/env bash
# Where a cluster phase's time goes: one bed (scripts/cluster.sh, three nodes), the load's max,
# half and hot phases (bench/cluster/src/main.rs), and beside them three samplers on the
# PostgreSQL primary: what every active backend waits on, 20 times a second (pg_stat_activity);
# WAL bytes, syncs and sync time, checkpoint buffers and the synchronous standby's flush lag,
# once a second (pg_stat_wal, pg_stat_bgwriter, pg_stat_replication); and vmstat. Then
# bench/cluster/probe_report.py prints, per phase, the wait mix and, per second of the half
# phase, the slowest put beside what the machine and the primary were doing.
#
# usage: [SLUICE_BIN=...] [SECS=20] [SETTLE=20] [PHASES=max,half,hot] [BED_PG_PARAMETERS=...]
#        [STEADY=PUTS_PER_S (with PHASES=steady,...: an open loop at that fixed rate, so that two
#        binaries' tails compare at the same load, whatever their maxima)]
#        [SLUICE_LB_BALANCE=uri|roundrobin (default uri, as cluster_bench.sh)]
#        bash bench/cluster/probe.sh LABEL        -> bench/cluster/out/probe-LABEL/
set -euo pipefail
LABEL=${1:?usage: probe.sh LABEL}
SECS=${SECS:-20} SETTLE=${SETTLE:-20} PHASES=${PHASES:-max,half,hot}
export SLUICE_LB_BALANCE="${SLUICE_LB_BALANCE:-uri}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
if [ -z "${SLUICE_BIN:-}" ]; then
  cargo build --release -q -p sluice
  SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice"
fi
export SLUICE_BIN
(cd bench && cargo build --release -q --bin sluice-cluster-bench)
LOAD="$CARGO_TARGET_DIR/release/sluice-cluster-bench"
OUT="$ROOT/bench/cluster/out/probe-$LABEL"
rm -rf "$OUT" && mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/sluice-probe.XXXXXX)"
chmod 755 "$WORK" # the bed's PostgreSQL runs as postgres and must reach $BED below it
export BED="$WORK/bed"
SAMPLERS=()
cleanup() {
  kill "${SAMPLERS[@]}" 2>/dev/null || true
  bash scripts/cluster.sh down --purge >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
BED_PORT_BASE=auto bash scripts/cluster.sh up >"$OUT/bed.log" 2>&1
bash scripts/cluster.sh nodes-up 3 >>"$OUT/bed.log" 2>&1
eval "$(bash scripts/cluster.sh env)"
pidf() { cat "$1" 2>/dev/null || echo 0; }
PIDS="haproxy=$(pidf "$BED/run/haproxy.pid")"
for i in 1 2 3; do
  PIDS="$PIDS,sluice-s$i=$(pidf "$BED/run/sluice-s$i.pid"),postgres-n$i=$(head -1 "$BED/pg/n$i/postmaster.pid")+"
done
export PGPASSWORD=$SLUICE_TEST_CLUSTER_PG_PASSWORD
PSQL=(psql -h 127.0.0.1 -p "$SLUICE_TEST_CLUSTER_PG_PORT" -U postgres -d sluice -AtX -F '|')
"${PSQL[@]}" -c "SELECT name || '=' || setting FROM pg_settings WHERE name IN
  ('shared_buffers','max_wal_size','checkpoint_timeout','default_toast_compression','synchronous_standby_names')" >"$OUT/settings.txt"
# One connection per sampler (psql's \watch), so that sampling costs no connection setup.
echo "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), backend_type, coalesce(wait_event_type, 'CPU'),
  coalesce(wait_event, '-'), left(query, 10) FROM pg_stat_activity
  WHERE pid <> pg_backend_pid() AND ((state = 'active' AND backend_type <> 'walsender')
    OR (backend_type IN ('checkpointer', 'background writer', 'walwriter', 'walsender')
        AND wait_event_type IS DISTINCT FROM 'Activity')) \\watch 0.05" |
  timeout 900 "${PSQL[@]}" >"$OUT/wait.txt" 2>/dev/null &
SAMPLERS+=($!)
echo "SELECT to_char(clock_timestamp(), 'HH24:MI:SS'), w.wal_bytes, w.wal_sync, w.wal_sync_time,
  w.wal_write_time, b.buffers_checkpoint, b.buffers_backend,
  (SELECT coalesce(max(extract(epoch FROM flush_lag) * 1000), 0)::int FROM pg_stat_replication)
  FROM pg_stat_wal w, pg_stat_bgwriter b \\watch 1" |
  timeout 900 "${PSQL[@]}" >"$OUT/io.txt" 2>/dev/null &
SAMPLERS+=($!)
vmstat -t 1 >"$OUT/vmstat.txt" &
SAMPLERS+=($!)
sleep 2
"$LOAD" --endpoint "$SLUICE_ENDPOINT" --access-id "$SLUICE_ACCESS_ID" --access-key "$SLUICE_ACCESS_KEY" \
  --secs "$SECS" --settle "$SETTLE" --phases "$PHASES" ${STEADY:+--steady "$STEADY"} --pids "$PIDS" --name probe |
  while IFS= read -r line; do echo "$(date -u +%T) $line"; done >"$OUT/load.jsonl"
python3 bench/cluster/probe_report.py "$OUT" | tee "$OUT/report.txt"
