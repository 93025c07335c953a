#!/usr/bin/env bash
# The HA test bed of issue 14, all on loopback: etcd ×3, PostgreSQL 15 ×3 under Patroni
# (synchronous_mode + strict, maximum_lag_on_failover 0, ttl 20 / loop_wait 2 / retry_timeout 5,
# use_pg_rewind, wal_retrieve_retry_interval 500ms), haproxy in front (a port that always reaches
# the primary, by Patroni's REST check `GET /primary`) and an s3s-fs for the archive. The settings
# are explained in scripts/cluster_conf.sh; README.md "Cluster test bed" gives the measured times.
#
#   scripts/cluster.sh up                  install what is missing (apt-get), start everything from
#                                          empty data dirs, wait until a synchronous commit works,
#                                          print the haproxy URL
#   scripts/cluster.sh down [--purge]      stop every bed process by its recorded PID, wipe the data
#                                          (--purge: also the logs and configs); idempotent
#   scripts/cluster.sh status              processes, Patroni members, etcd health, URLs
#   scripts/cluster.sh env                 `export ...` lines for tests (eval "$(... env)")
#   scripts/cluster.sh wait-healthy [S]    wait (max S s, default 120): etcd 3/3 healthy, 3 members
#                                          running, 1 leader, 1 sync standby, lag 0
#   scripts/cluster.sh switchover          patronictl switchover to the sync standby
#   scripts/cluster.sh kill-primary        kill -9 the leader's Patroni and postmaster
#   scripts/cluster.sh kill-sync-standby   kill -9 the sync standby's Patroni and postmaster
#   scripts/cluster.sh kill-etcd [eN]      kill -9 one etcd member (default: the raft leader)
#   scripts/cluster.sh restart [MEMBER..]  restart killed members (default: every dead one; etcd
#                                          members rejoin with --initial-cluster-state existing)
#   scripts/cluster.sh freeze-sync-standby SIGSTOP the sync standby (Patroni, postmaster, children)
#   scripts/cluster.sh thaw                SIGCONT whatever freeze-sync-standby stopped
#   scripts/cluster.sh logs                the last lines of every bed log (on stderr)
# Sluice nodes (scripts/cluster_nodes.sh; `sluice serve --cluster` on this bed, behind haproxy):
#   scripts/cluster.sh nodes-up [N]        start nodes s1..sN (default 3), wait until healthy;
#                                          prints the one endpoint (haproxy, round robin)
#   scripts/cluster.sh nodes-down          SIGTERM every node, wait
#   scripts/cluster.sh kill-node I         kill -9 node sI (1..3)
#   scripts/cluster.sh term-node I         SIGTERM node sI (graceful), wait until it is gone
#   scripts/cluster.sh freeze-node I [S]   SIGSTOP node sI; with S: SIGCONT after S seconds
#   scripts/cluster.sh thaw-node I         SIGCONT node sI
#   scripts/cluster.sh start-node I        start node sI (again), wait until healthy
# The fault commands print the name of the member they hit (n1..n3, e1..e3) on stdout.
#
# Environment:
#   BED            the bed's private directory (default /tmp/sluice-bed; PostgreSQL runs as the
#                  postgres user, so it must be reachable by it: not under /root)
#   BED_PORT_BASE  ports used: base+1..3 etcd clients, +11..13 etcd peers, +21..23 PostgreSQL,
#                  +31..33 Patroni REST, +40 haproxy primary, +41 haproxy stats, +50 s3s-fs,
#                  +60 haproxy for the Sluice nodes, +61..63 the Sluice nodes
#                  (default 24000: below the ephemeral range services.sh's free ports come from;
#                  `auto`: the first free block from 24000 on, in steps of 100)
#   BED_PG_PARAMETERS  more PostgreSQL settings for every member, "name=value,name=value"
#                  (the bed's own are sized for tests; bench/cluster/cluster_bench.sh passes
#                  larger ones)
#   SLUICE_BED_ARCHIVE  `off`: the nodes run without --archive (what the archiver costs the
#                  puts, in a benchmark); default on
# Processes are only ever signalled by the PIDs this script recorded, after checking that the PID's
# command line still names this bed (other engineers run PostgreSQL and etcd on the same machine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BED="${BED:-/tmp/sluice-bed}"
BED="$(realpath -m "$BED")"
case "$BED" in /*/*) ;; *) echo "BED=$BED: give a directory of its own (e.g. /tmp/sluice-bed)" >&2 && exit 2 ;; esac
PG_BIN=/usr/lib/postgresql/15/bin
SYS_PY=/usr/bin/python3 # Debian's python: has psycopg2 and python3-etcd (Patroni's own)
PG_SUPERUSER_PASSWORD=sluice-bed-pg
S3_ACCESS_KEY=sluice-bed-ak
S3_SECRET_KEY=sluice-bed-sk
S3_BUCKET=sluice-archive
MEMBERS=(1 2 3)

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh" # s3s_fs_bin (installs s3s-fs into the cache dir once)
# shellcheck source=scripts/cluster_conf.sh
source "$ROOT/scripts/cluster_conf.sh" # write_configs: Patroni YAMLs, haproxy.cfg, bed.env
# shellcheck source=scripts/cluster_nodes.sh
source "$ROOT/scripts/cluster_nodes.sh" # the Sluice nodes and their haproxy frontend

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---- ports (recorded in $BED/bed.env by `up`, so later commands find the same bed) -------------
load_ports() { # [fresh]: `up` takes BED_PORT_BASE from the environment, not from the last bed
  if [ "${1:-}" != fresh ] && [ -f "$BED/bed.env" ]; then
    # shellcheck disable=SC1091
    source "$BED/bed.env"
  fi
  BED_PORT_BASE="${BED_PORT_BASE:-24000}"
  if [ "$BED_PORT_BASE" = auto ]; then BED_PORT_BASE="$(free_port_base)"; fi
  local b=$BED_PORT_BASE
  HAPROXY_PORT=$((b + 40))
  STATS_PORT=$((b + 41))
  S3_PORT=$((b + 50))
  ETCD_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
}
ports_free() { # BASE: all of base+1..base+70 can be bound on 127.0.0.1
  "$SYS_PY" -c '
import socket, sys
b = int(sys.argv[1])
for p in range(b + 1, b + 71):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p))
    s.close()' "$1" 2>/dev/null
}
free_port_base() { # the first base from 24000 (step 100, below 32768) whose ports are all free
  local b
  for ((b = 24000; b <= 32600; b += 100)); do
    if ports_free "$b"; then
      echo "$b"
      return 0
    fi
  done
  die "no free block of 70 ports between 24000 and 32700"
}
etcd_client_port() { echo $((BED_PORT_BASE + $1)); }
etcd_peer_port() { echo $((BED_PORT_BASE + 10 + $1)); }
pg_port() { echo $((BED_PORT_BASE + 20 + $1)); }
rest_port() { echo $((BED_PORT_BASE + 30 + $1)); }

# ---- processes ------------------------------------------------------------------------------
# alive PID PATTERN: running (not a zombie) and its command line contains PATTERN.
alive() {
  [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] &&
    [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ] &&
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$2"
}
pidof_file() { cat "$1" 2>/dev/null || true; }
# stopwait PID TIMEOUT_S PATTERN: SIGTERM, wait, then SIGKILL.
stopwait() {
  local p=$1 t=$2 pat=$3 i
  alive "$p" "$pat" || return 0
  kill -CONT "$p" 2>/dev/null || true
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    alive "$p" "$pat" || return 0
    sleep 0.1
  done
  log "pid $p did not stop in ${t}s, sending SIGKILL"
  kill -KILL "$p" 2>/dev/null || true
}
patroni_pid() { pidof_file "$BED/pg/run/patroni-n$1.pid"; }
patroni_pattern() { echo "patroni $BED/conf/n$1.yml"; }
postmaster_pid() { head -1 "$BED/pg/n$1/postmaster.pid" 2>/dev/null || true; }
postmaster_pattern() { echo "postgres -D $BED/pg/n$1"; }
etcd_pid() { pidof_file "$BED/run/etcd-e$1.pid"; }
etcd_pattern() { echo "--data-dir $BED/etcd/e$1"; }
patroni_alive() { alive "$(patroni_pid "$1")" "$(patroni_pattern "$1")"; }
etcd_alive() { alive "$(etcd_pid "$1")" "$(etcd_pattern "$1")"; }

# ---- installation ---------------------------------------------------------------------------
install_missing() {
  local need=()
  [ -x /usr/bin/etcd ] || need+=(etcd-server)
  [ -x /usr/bin/etcdctl ] || need+=(etcd-client)
  [ -x /usr/bin/patroni ] && [ -x /usr/bin/patronictl ] || need+=(patroni)
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)
  [ -x "$PG_BIN/initdb" ] || need+=(postgresql-15)
  [ -x "$PG_BIN/psql" ] || need+=(postgresql-client-15)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  "$SYS_PY" -c 'import etcd' 2>/dev/null || need+=(python3-etcd)
  "$SYS_PY" -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
  id postgres >/dev/null 2>&1 || need+=(postgresql-15)
  [ "${#need[@]}" -eq 0 ] && return 0
  log "installing: ${need[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${need[*]}"
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and there is no apt-get"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -q
    --no-install-recommends)
  "${apt[@]}" "${need[@]}" </dev/null >/dev/null ||
    { apt-get update -q </dev/null >/dev/null && "${apt[@]}" "${need[@]}" </dev/null >/dev/null; } ||
    die "apt-get install ${need[*]} failed"
}

# ---- starting members -----------------------------------------------------------------------
start_etcd() { # i new|existing
  local i=$1 state=$2 peers="" j
  for j in "${MEMBERS[@]}"; do peers="$peers${peers:+,}e$j=http://127.0.0.1:$(etcd_peer_port "$j")"; done
  setsid /usr/bin/etcd --name "e$i" --data-dir "$BED/etcd/e$i" \
    --listen-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
    --advertise-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
    --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-cluster "$peers" --initial-cluster-token "sluice-bed-$BED_PORT_BASE" \
    --initial-cluster-state "$state" --logger zap --log-outputs stderr \
    </dev/null >>"$BED/log/etcd-e$i.log" 2>&1 &
  echo $! >"$BED/run/etcd-e$i.pid"
  log "etcd e$i pid $!"
}

start_patroni() { # i
  local i=$1 k
  rm -f "$BED/pg/run/patroni-n$i.pid"
  # runuser forks and stays the parent: the shell records its own PID, then execs Patroni.
  setsid runuser -u postgres -- /bin/sh -c \
    "echo \$\$ > $BED/pg/run/patroni-n$i.pid; exec /usr/bin/patroni $BED/conf/n$i.yml >>$BED/pg/log/patroni-n$i.log 2>&1" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$BED/run/runuser-n$i.pid"
  for ((k = 0; k < 50; k++)); do
    [ -s "$BED/pg/run/patroni-n$i.pid" ] && break
    sleep 0.1
  done
  log "patroni n$i pid $(patroni_pid "$i")"
}

start_haproxy() {
  /usr/sbin/haproxy -q -c -f "$BED/conf/haproxy.cfg" || die "haproxy rejects $BED/conf/haproxy.cfg"
  setsid /usr/sbin/haproxy -db -f "$BED/conf/haproxy.cfg" </dev/null >>"$BED/log/haproxy.log" 2>&1 &
  echo $! >"$BED/run/haproxy.pid"
  log "haproxy pid $!"
}

start_s3() {
  local bin
  bin="$(s3s_fs_bin)" || die "cannot install s3s-fs"
  mkdir -p "$BED/s3/$S3_BUCKET"
  setsid "$bin" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" \
    --secret-key "$S3_SECRET_KEY" "$BED/s3" </dev/null >>"$BED/log/s3s-fs.log" 2>&1 &
  echo $! >"$BED/run/s3s-fs.pid"
  log "s3s-fs pid $!"
}

# ---- queries --------------------------------------------------------------------------------
psql_primary() { # SQL: one value, through haproxy
  PGPASSWORD=$PG_SUPERUSER_PASSWORD PGCONNECT_TIMEOUT=2 "$PG_BIN/psql" -X -h 127.0.0.1 \
    -p "$HAPROXY_PORT" -U postgres -d postgres -Atqc "$1"
}
rest_member_with() { # /primary or /sync: the member answering 200
  local i
  for i in "${MEMBERS[@]}"; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(rest_port "$i")$1")" = 200 ]; then
      echo "n$i"
      return 0
    fi
  done
  return 1
}
cluster_json() {
  local i
  for i in "${MEMBERS[@]}"; do
    curl -sf --max-time 1 "http://127.0.0.1:$(rest_port "$i")/cluster" && return 0
  done
  return 1
}
healthy() {
  cluster_json 2>/dev/null | "$SYS_PY" -c '
import json, sys
m = json.load(sys.stdin)["members"]
ok = (len(m) == 3 and all(x["state"] in ("running", "streaming") for x in m)
      and len({x.get("timeline") for x in m}) == 1
      and sum(x["role"] == "leader" for x in m) == 1
      and sum(x["role"] == "sync_standby" for x in m) == 1
      and all(x.get("lag", 0) == 0 for x in m))
sys.exit(0 if ok else 1)'
}
wait_for() { # SECONDS WHAT COMMAND...
  local t=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < t)) || {
      log "timed out after ${t}s waiting for: $what"
      return 1
    }
    sleep 0.2
  done
  log "$what ($((SECONDS - start)) s)"
}
etcd_healthy() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint health; }
sync_ready() { [ "$(psql_primary "select count(*) filter (where state = 'streaming') || ',' || count(*) filter (where sync_state = 'sync') from pg_stat_replication")" = "2,1" ]; }

bed_running() {
  local i
  for i in "${MEMBERS[@]}"; do
    patroni_alive "$i" && return 0
    etcd_alive "$i" && return 0
  done
  alive "$(pidof_file "$BED/run/haproxy.pid")" "$BED/conf/haproxy.cfg" && return 0
  alive "$(pidof_file "$BED/run/s3s-fs.pid")" "$BED/s3" && return 0
  for i in 1 2 3; do node_alive "$i" && return 0; done
  return 1
}

print_logs() {
  local f
  for f in "$BED"/pg/log/patroni-n*.log "$BED"/log/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail $f" >&2
    tail -15 "$f" >&2
  done
}

# ---- commands -------------------------------------------------------------------------------
cmd_up() {
  load_ports
  if bed_running; then die "the bed in $BED is already running (scripts/cluster.sh down first)"; fi
  install_missing
  load_ports fresh
  ports_free "$BED_PORT_BASE" ||
    die "a port in $((BED_PORT_BASE + 1))..$((BED_PORT_BASE + 70)) is in use; set BED_PORT_BASE (or auto)"
  local t0=$SECONDS i
  log "bed in $BED, ports $((BED_PORT_BASE + 1))..$((BED_PORT_BASE + 70))"
  rm -rf "$BED/etcd" "$BED/pg" "$BED/s3" "$BED/run" "$BED/log" "$BED/sluice"
  mkdir -p "$BED/etcd" "$BED/run" "$BED/log"
  chmod 755 "$BED"
  install -d -o postgres -g postgres -m 700 "$BED/pg"
  install -d -o postgres -g postgres -m 755 "$BED/pg/run" "$BED/pg/sock" "$BED/pg/log"
  write_configs
  # Whatever fails from here on (a timeout, a die), stop what was started.
  trap 'log "up failed; logs:"; print_logs; cmd_down >&2 || true' EXIT
  for i in "${MEMBERS[@]}"; do start_etcd "$i" new; done
  wait_for 60 "etcd healthy" etcd_healthy
  start_haproxy
  start_s3
  for i in "${MEMBERS[@]}"; do start_patroni "$i"; done
  wait_for 120 "primary reachable through haproxy" psql_primary "select 1"
  wait_for 120 "2 replicas streaming, 1 synchronous" sync_ready
  wait_for 30 "s3s-fs answers" curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$S3_PORT/"
  # A database for Sluice; CREATE DATABASE commits synchronously, so this proves sync commits work.
  psql_primary "create database sluice" >/dev/null
  trap - EXIT
  log "bed up in $((SECONDS - t0)) s (a synchronous commit went through)"
  echo "postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$HAPROXY_PORT/sluice"
}

cmd_down() {
  load_ports
  local i p pms=()
  if [ -f "$BED/run/frozen" ]; then cmd_thaw >/dev/null || true; fi
  cmd_nodes_down # the Sluice nodes first: they write to PostgreSQL and the archive
  for i in "${MEMBERS[@]}"; do
    p="$(postmaster_pid "$i")"
    [ -n "$p" ] && pms+=("$i:$p")
  done
  # Patroni stops its own PostgreSQL on SIGTERM: all three at once.
  # `wait` names its jobs: called from up's EXIT trap, this shell is also the parent of etcd,
  # haproxy and s3s-fs, and a bare `wait` would wait for them forever.
  local jobs=()
  for i in "${MEMBERS[@]}"; do
    stopwait "$(patroni_pid "$i")" 60 "$(patroni_pattern "$i")" &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  log "patroni stopped"
  for p in "${pms[@]}"; do # postmasters left behind (their Patroni was killed)
    stopwait "${p#*:}" 30 "$(postmaster_pattern "${p%%:*}")"
  done
  for i in "${MEMBERS[@]}"; do stopwait "$(pidof_file "$BED/run/runuser-n$i.pid")" 5 "patroni $BED/conf/n$i.yml"; done
  stopwait "$(pidof_file "$BED/run/haproxy.pid")" 10 "$BED/conf/haproxy.cfg"
  stopwait "$(pidof_file "$BED/run/s3s-fs.pid")" 10 "$BED/s3"
  # A stopping raft leader tries to hand over to peers that are stopping too (~7 s); the data is
  # wiped next, so a member still up after 3 s is killed.
  jobs=()
  for i in "${MEMBERS[@]}"; do
    stopwait "$(etcd_pid "$i")" 3 "$(etcd_pattern "$i")" &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  if bed_running; then die "some bed processes are still running (see scripts/cluster.sh status)"; fi
  log "stopped; wiping the data"
  rm -rf "$BED/etcd" "$BED/pg" "$BED/s3" "$BED/run" "$BED/sluice"
  if [ "${1:-}" = --purge ]; then # only what up made, then the dir itself if nothing else is left
    rm -rf "$BED/conf" "$BED/log" "$BED/bed.env"
    rmdir "$BED" 2>/dev/null || true
  fi
  log "bed in $BED is down"
}

cmd_status() {
  load_ports
  local i
  for i in "${MEMBERS[@]}"; do
    printf 'etcd e%s  pid %-8s %s\n' "$i" "$(etcd_pid "$i")" "$(etcd_alive "$i" && echo running || echo down)"
  done
  for i in "${MEMBERS[@]}"; do
    printf 'patroni n%s pid %-8s %s  (postgres 127.0.0.1:%s, REST :%s)\n' "$i" "$(patroni_pid "$i")" \
      "$(patroni_alive "$i" && echo running || echo down)" "$(pg_port "$i")" "$(rest_port "$i")"
  done
  printf 'haproxy   pid %-8s %s\n' "$(pidof_file "$BED/run/haproxy.pid")" \
    "$(alive "$(pidof_file "$BED/run/haproxy.pid")" "$BED/conf/haproxy.cfg" && echo running || echo down)"
  printf 's3s-fs    pid %-8s %s\n' "$(pidof_file "$BED/run/s3s-fs.pid")" \
    "$(alive "$(pidof_file "$BED/run/s3s-fs.pid")" "$BED/s3" && echo running || echo down)"
  nodes_status
  bed_running || return 0
  patronictl -c "$BED/conf/n1.yml" list 2>/dev/null || true
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint health 2>&1 || true
  echo "primary (haproxy): postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$HAPROXY_PORT/sluice"
  echo "haproxy stats:     http://127.0.0.1:$STATS_PORT/"
  echo "archive (s3s-fs):  http://127.0.0.1:$S3_PORT/$S3_BUCKET"
  echo "sluice (haproxy):  http://127.0.0.1:$(sluice_lb_port)"
  if healthy; then echo "healthy: yes"; else echo "healthy: no"; fi
}

cmd_env() {
  load_ports
  local i members="" # each Patroni member directly (the ha_* tests offer standbys to the pools)
  for i in 1 2 3; do
    members+="${members:+,}postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$(pg_port "$i")/sluice"
  done
  cat <<EOF
export SLUICE_TEST_CLUSTER_BED=$BED
export SLUICE_TEST_CLUSTER_PG_URL=postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$HAPROXY_PORT/sluice
export SLUICE_TEST_CLUSTER_PG_PORT=$HAPROXY_PORT
export SLUICE_TEST_CLUSTER_PG_MEMBER_URLS=$members
export SLUICE_TEST_CLUSTER_PG_PASSWORD=$PG_SUPERUSER_PASSWORD
export SLUICE_TEST_CLUSTER_ETCD=$ETCD_ENDPOINTS
export SLUICE_TEST_CLUSTER_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export SLUICE_TEST_CLUSTER_S3_BUCKET=$S3_BUCKET
export SLUICE_TEST_CLUSTER_S3_ACCESS_KEY=$S3_ACCESS_KEY
export SLUICE_TEST_CLUSTER_S3_SECRET_KEY=$S3_SECRET_KEY
export SLUICE_TEST_CLUSTER_S3_DIR=$BED/s3
export SLUICE_TEST_CLUSTER_SCRIPT=$ROOT/scripts/cluster.sh
EOF
  nodes_env
}

cmd_wait_healthy() {
  load_ports
  wait_for "${1:-120}" "etcd 3/3 healthy; patroni: 3 members running, 1 leader, 1 sync standby, lag 0" \
    healthy_all
}
healthy_all() { etcd_healthy && healthy; }

require_up() { bed_running || die "the bed in $BED is not running (scripts/cluster.sh up)"; }

cmd_switchover() {
  load_ports
  require_up
  local old
  old="$(rest_member_with /primary)" || die "no primary"
  log "switchover from $old"
  patronictl -c "$BED/conf/n1.yml" switchover --force >&2 || die "patronictl switchover failed"
  wait_for 60 "a new primary answers /primary" new_primary_other_than "$old"
  rest_member_with /primary
}
new_primary_other_than() { local p; p="$(rest_member_with /primary)" && [ "$p" != "$1" ]; }

kill_node() { # nN: kill -9 its Patroni and its postmaster
  local i=${1#n} pp pm
  pp="$(patroni_pid "$i")"
  pm="$(postmaster_pid "$i")"
  alive "$pp" "$(patroni_pattern "$i")" || die "patroni n$i is not running"
  alive "$pm" "$(postmaster_pattern "$i")" || die "postgres n$i is not running"
  log "kill -9 n$i: patroni $pp, postmaster $pm"
  kill -KILL "$pp" "$pm"
  echo "n$i"
}
cmd_kill_primary() {
  load_ports
  require_up
  local n
  n="$(rest_member_with /primary)" || die "no primary"
  kill_node "$n"
}
cmd_kill_sync_standby() {
  load_ports
  require_up
  local n
  n="$(rest_member_with /sync)" || die "no synchronous standby"
  kill_node "$n"
}

etcd_leader() {
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint status -w json 2>/dev/null |
    "$SYS_PY" -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print(e["Endpoint"].rsplit(":", 1)[1])'
}
cmd_kill_etcd() {
  load_ports
  require_up
  local m=${1:-} i port
  if [ -z "$m" ]; then
    port="$(etcd_leader)" || true
    for i in "${MEMBERS[@]}"; do [ "$(etcd_client_port "$i")" = "$port" ] && m="e$i"; done
    [ -n "$m" ] || die "cannot tell the etcd raft leader"
  fi
  i=${m#e}
  etcd_alive "$i" || die "etcd $m is not running"
  log "kill -9 etcd $m pid $(etcd_pid "$i")"
  kill -KILL "$(etcd_pid "$i")"
  echo "$m"
}

cmd_restart() {
  load_ports
  local targets=("$@") m i
  if [ "${#targets[@]}" -eq 0 ]; then
    for i in "${MEMBERS[@]}"; do
      etcd_alive "$i" || targets+=("e$i")
      patroni_alive "$i" || targets+=("n$i")
    done
  fi
  for m in "${targets[@]}"; do
    i=${m#?}
    case "$m" in
      e[123]) etcd_alive "$i" || start_etcd "$i" existing ;;
      n[123])
        if ! patroni_alive "$i"; then
          # a postmaster whose Patroni was killed alone would block the restart; the old runuser
          # parent is stopped too (it may be stopped by a freeze, waiting for nothing)
          stopwait "$(postmaster_pid "$i")" 30 "$(postmaster_pattern "$i")"
          stopwait "$(pidof_file "$BED/run/runuser-n$i.pid")" 5 "patroni $BED/conf/n$i.yml"
          start_patroni "$i"
        fi
        ;;
      *) die "unknown member $m (e1..e3, n1..n3)" ;;
    esac
  done
  echo "${targets[*]}"
}

cmd_freeze_sync_standby() {
  load_ports
  require_up
  [ ! -f "$BED/run/frozen" ] || die "already frozen (scripts/cluster.sh thaw)"
  local n i pp pm pids
  n="$(rest_member_with /sync)" || die "no synchronous standby"
  i=${n#n}
  pp="$(patroni_pid "$i")"
  pm="$(postmaster_pid "$i")"
  alive "$pm" "$(postmaster_pattern "$i")" || die "postgres $n is not running"
  # Patroni first (so it cannot report the stop), then the postmaster's children, then itself.
  # runuser (Patroni's parent) stops itself when its child stops; thaw continues it as well.
  pids="$pp $(ps -o pid= --ppid "$pm" | tr '\n' ' ') $pm $(pidof_file "$BED/run/runuser-n$i.pid")"
  echo "$pids" >"$BED/run/frozen"
  # shellcheck disable=SC2086
  kill -STOP $pids
  log "froze $n (pids $pids)"
  echo "$n"
}
cmd_thaw() {
  load_ports
  [ -f "$BED/run/frozen" ] || return 0
  local p pids
  read -ra pids <"$BED/run/frozen"
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  rm -f "$BED/run/frozen"
  log "thawed"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

CMD="${1:-}"
[ "$#" -gt 0 ] && shift
case "$CMD" in
  up) cmd_up ;;
  down) cmd_down "$@" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  wait-healthy) cmd_wait_healthy "$@" ;;
  switchover) cmd_switchover ;;
  kill-primary) cmd_kill_primary ;;
  kill-sync-standby) cmd_kill_sync_standby ;;
  kill-etcd) cmd_kill_etcd "$@" ;;
  restart) cmd_restart "$@" ;;
  freeze-sync-standby) cmd_freeze_sync_standby ;;
  thaw) cmd_thaw ;;
  logs) print_logs ;;
  nodes-up) cmd_nodes_up "$@" ;;
  nodes-down) cmd_nodes_down ;;
  kill-node) cmd_kill_node "$@" ;;
  term-node) cmd_term_node "$@" ;;
  freeze-node) cmd_freeze_node "$@" ;;
  thaw-node) cmd_thaw_node "$@" ;;
  start-node) cmd_start_node "$@" ;;
  *) usage ;;
esac
