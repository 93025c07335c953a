# shellcheck shell=bash
# The Sluice nodes of the HA test bed (issue 14), sourced by scripts/cluster.sh: up to three
# `sluice serve --cluster` processes on loopback, all on the bed's PostgreSQL (through the haproxy
# port that always reaches the primary) and its s3s-fs archive, behind a second haproxy frontend
# (`balance roundrobin`, `GET /health` check every second) so that clients use one endpoint.
#
# Every node shares the bed's server key ($BED/sluice/server.key, 32 random bytes as 64 hex digits,
# made once per bed) and root credentials ($SLUICE_BED_ACCESS_ID, key in $BED/sluice/access.key); its
# --data-dir ($BED/sluice/sN) is scratch. Ports: base+60 the frontend, base+61..63 the nodes.
# Processes are signalled only by their recorded PIDs ($BED/run/sluice-sN.pid), after checking
# that the PID's command line still names this bed's node.
#
# Environment read by `nodes-up` / `start-node`:
#   SLUICE_BIN               the server binary (default: the one the bed's nodes last ran, else
#                            $CARGO_TARGET_DIR/release/sluice or /root/.cache/sluice/target/...)
#   SLUICE_BED_ACCESS_ID     root access id of every node (default sluiceBedId)
#   SLUICE_BED_ACCESS_KEY    its key (default: random, made once per bed)
#   SLUICE_BED_NODE_ARGS     extra `sluice serve` arguments for every node (e.g. --config F)
# Read by `up` (it writes haproxy.cfg):
#   SLUICE_LB_BALANCE        how the frontend spreads requests: roundrobin (default), or uri (a
#                            consistent hash of the path, so every request for one shard reaches
#                            the same node and its puts share that node's appends)

NODE_MAX=3
node_port() { echo $((BED_PORT_BASE + 60 + $1)); }
sluice_lb_port() { echo $((BED_PORT_BASE + 60)); }
node_dir() { echo "$BED/sluice/s$1"; }
node_pid() { pidof_file "$BED/run/sluice-s$1.pid"; }
node_pattern() { echo "--data-dir $(node_dir "$1")"; }
node_alive() { alive "$(node_pid "$1")" "$(node_pattern "$1")"; }
node_url() { echo "http://127.0.0.1:$(node_port "$1")"; }
node_index() { # s2 | 2 -> 2, refusing anything else
  local i=${1#s}
  case "$i" in [1-3]) echo "$i" ;; *) die "unknown node $1 (1..$NODE_MAX or s1..s$NODE_MAX)" ;; esac
}

sluice_bin() { # SLUICE_BIN, else the one the bed's nodes were started with, else the release build
  local b="${SLUICE_BIN:-}"
  if [ -z "$b" ] && [ -s "$BED/sluice/bin" ]; then b="$(cat "$BED/sluice/bin")"; fi
  if [ -z "$b" ]; then
    b="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}/release/sluice"
  fi
  [ -x "$b" ] || die "no sluice binary at $b (cargo build --release -p sluice, or set SLUICE_BIN)"
  realpath "$b"
}

# The secrets every node shares, made once per bed (0600, outside any log or command line).
# Written to a temporary file and renamed: a node starting meanwhile reads the old or the new
# file, never a truncated one.
put_secret() { # file content
  (umask 077 && printf '%s' "$2" >"$1.tmp") && mv -f "$1.tmp" "$1"
}
node_secrets() {
  mkdir -p "$BED/sluice"
  chmod 700 "$BED/sluice"
  if [ ! -s "$BED/sluice/server.key" ]; then
    put_secret "$BED/sluice/server.key" "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  fi
  if [ -n "${SLUICE_BED_ACCESS_KEY:-}" ]; then
    put_secret "$BED/sluice/access.key" "$SLUICE_BED_ACCESS_KEY"
  elif [ ! -s "$BED/sluice/access.key" ]; then
    put_secret "$BED/sluice/access.key" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
  fi
  if [ -n "${SLUICE_BED_ACCESS_ID:-}" ] || [ ! -s "$BED/sluice/access.id" ]; then
    put_secret "$BED/sluice/access.id" "${SLUICE_BED_ACCESS_ID:-sluiceBedId}"
  fi
}

node_health() { # i: GET /health answers 200
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$(node_url "$1")/health")" = 200 ]
}
lb_health() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(sluice_lb_port)/health")" = 200 ]; }

start_node() { # i
  local i=$1 bin extra=() archive=()
  bin="$(sluice_bin)"
  # SLUICE_BED_ARCHIVE=off: no archive, so nothing moves out of PostgreSQL (a benchmark
  # measuring what the archiver costs the put path; the tests keep it on).
  if [ "${SLUICE_BED_ARCHIVE:-on}" != off ]; then
    archive=(--archive "s3://$S3_BUCKET/bed?endpoint=http://127.0.0.1:$S3_PORT")
  fi
  node_secrets
  echo "$bin" >"$BED/sluice/bin" # start-node (e.g. from a test) restarts the same binary
  mkdir -p "$(node_dir "$i")"
  if [ -n "${SLUICE_BED_NODE_ARGS:-}" ]; then read -ra extra <<<"$SLUICE_BED_NODE_ARGS"; fi
  # SLUICE_* variables of the caller (e.g. from `env`, for the CLI) must not reach the server.
  # The PostgreSQL URL (with its password) goes by environment, not on the command line; the
  # archive's S3 keys too (AWS_*, as --archive reads them).
  setsid env -u SLUICE_ACCESS_ID -u SLUICE_ACCESS_KEY -u SLUICE_ACCESS_KEY_FILE -u SLUICE_ENDPOINT \
    -u SLUICE_DATA_DIR -u SLUICE_LISTEN -u SLUICE_CONFIG \
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    SLUICE_CLUSTER="postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$HAPROXY_PORT/sluice" \
    RUST_LOG="${RUST_LOG:-info}" \
    "$bin" serve --listen "127.0.0.1:$(node_port "$i")" --data-dir "$(node_dir "$i")" \
    "${archive[@]}" \
    --node-id "s$i" --advertise "127.0.0.1:$(node_port "$i")" \
    --server-key-file "$BED/sluice/server.key" \
    --access-id "$(cat "$BED/sluice/access.id")" --access-key-file "$BED/sluice/access.key" \
    "${extra[@]}" </dev/null >>"$BED/log/sluice-s$i.log" 2>&1 &
  echo $! >"$BED/run/sluice-s$i.pid"
  log "sluice s$i pid $! on $(node_url "$i")"
}

wait_node() { # i [timeout]: healthy, or die with the log's tail
  local i=$1 t=${2:-60} start=$SECONDS
  until node_health "$i"; do
    if ! node_alive "$i"; then
      tail -20 "$BED/log/sluice-s$i.log" >&2 || true
      die "sluice s$i exited during start-up (log above: $BED/log/sluice-s$i.log)"
    fi
    if ((SECONDS - start >= t)); then
      tail -20 "$BED/log/sluice-s$i.log" >&2 || true
      die "sluice s$i did not answer GET /health with 200 within ${t}s"
    fi
    sleep 0.2
  done
}

require_bed() {
  patroni_alive 1 || patroni_alive 2 || patroni_alive 3 ||
    die "the bed in $BED is not running (scripts/cluster.sh up first)"
}

cmd_nodes_up() {
  load_ports
  require_bed
  local n=${1:-3} i
  [[ "$n" =~ ^[1-3]$ ]] || die "nodes-up N: N is 1..$NODE_MAX"
  for ((i = 1; i <= n; i++)); do node_alive "$i" || start_node "$i"; done
  for ((i = 1; i <= n; i++)); do wait_node "$i" 90; done
  wait_for 30 "haproxy sends clients to the sluice nodes" lb_health
  echo "http://127.0.0.1:$(sluice_lb_port)"
}

stop_node() { # i signal timeout
  local i=$1 sig=$2 t=$3 p k
  p="$(node_pid "$i")"
  node_alive "$i" || return 0
  kill -CONT "$p" 2>/dev/null || true
  kill "-$sig" "$p" 2>/dev/null || true
  for ((k = 0; k < t * 10; k++)); do
    node_alive "$i" || return 0
    sleep 0.1
  done
  log "sluice s$i (pid $p) did not stop in ${t}s after SIG$sig, sending SIGKILL"
  kill -KILL "$p" 2>/dev/null || true
}

cmd_nodes_down() {
  load_ports
  local i jobs=()
  for ((i = 1; i <= NODE_MAX; i++)); do
    stop_node "$i" TERM 30 &
    jobs+=($!)
  done
  wait "${jobs[@]}" # only these: from up's EXIT trap this shell also parents the bed's daemons
  rm -f "$BED"/run/frozen-s*
  log "sluice nodes stopped"
}

cmd_kill_node() { # i: kill -9, wait until it is gone
  load_ports
  local i
  i="$(node_index "${1:?kill-node I}")"
  node_alive "$i" || die "sluice s$i is not running"
  log "kill -9 sluice s$i pid $(node_pid "$i")"
  stop_node "$i" KILL 10
  echo "s$i"
}

cmd_term_node() { # i: SIGTERM (graceful: leases released at once), wait until it is gone
  load_ports
  local i
  i="$(node_index "${1:?term-node I}")"
  node_alive "$i" || die "sluice s$i is not running"
  log "SIGTERM sluice s$i pid $(node_pid "$i")"
  stop_node "$i" TERM 60
  echo "s$i"
}

cmd_freeze_node() { # i [secs]: SIGSTOP; with secs, SIGCONT after that long (blocks meanwhile)
  load_ports
  local i secs=${2:-}
  i="$(node_index "${1:?freeze-node I [SECS]}")"
  node_alive "$i" || die "sluice s$i is not running"
  kill -STOP "$(node_pid "$i")"
  touch "$BED/run/frozen-s$i"
  log "froze sluice s$i pid $(node_pid "$i")"
  if [ -n "$secs" ]; then
    sleep "$secs"
    cmd_thaw_node "$i"
  fi
  echo "s$i"
}

cmd_thaw_node() { # i: SIGCONT a frozen node
  load_ports
  local i
  i="$(node_index "${1:?thaw-node I}")"
  if node_alive "$i"; then kill -CONT "$(node_pid "$i")"; fi
  rm -f "$BED/run/frozen-s$i"
  log "thawed sluice s$i"
}

cmd_start_node() { # i: start (again) and wait until healthy
  load_ports
  require_bed
  local i
  i="$(node_index "${1:?start-node I}")"
  node_alive "$i" || start_node "$i"
  wait_node "$i" 90
  echo "s$i"
}

nodes_status() {
  local i frozen
  for ((i = 1; i <= NODE_MAX; i++)); do
    frozen=""
    if [ -f "$BED/run/frozen-s$i" ]; then frozen=", FROZEN"; fi
    printf 'sluice s%s pid %-8s %s  (%s%s)\n' "$i" "$(node_pid "$i")" \
      "$(node_alive "$i" && echo running || echo down)" "$(node_url "$i")" "$frozen"
  done
}

nodes_env() {
  local ak="" aid=""
  [ -r "$BED/sluice/access.key" ] && ak="$(cat "$BED/sluice/access.key")"
  [ -r "$BED/sluice/access.id" ] && aid="$(cat "$BED/sluice/access.id")"
  cat <<EOF
export SLUICE_ENDPOINT=http://127.0.0.1:$(sluice_lb_port)
export SLUICE_ACCESS_ID=$aid
export SLUICE_ACCESS_KEY=$ak
export SLUICE_TEST_CLUSTER_NODES=$(node_url 1),$(node_url 2),$(node_url 3)
EOF
}

haproxy_balance() { # SLUICE_LB_BALANCE -> haproxy's balance lines
  case "${SLUICE_LB_BALANCE:-roundrobin}" in
    roundrobin) echo "    balance roundrobin" ;;
    uri) printf '    balance uri\n    hash-type consistent\n' ;;
    *) die "SLUICE_LB_BALANCE must be roundrobin or uri, not ${SLUICE_LB_BALANCE}" ;;
  esac
}

haproxy_sluice_section() {
  cat <<EOF
listen sluice
    mode http
    bind 127.0.0.1:$(sluice_lb_port)
$(haproxy_balance)
    option httpchk GET /health
    http-check expect status 200
    option redispatch 1
    timeout client 5m
    timeout server 5m
    default-server inter 1s fastinter 500ms downinter 1s rise 1 fall 2 on-marked-down shutdown-sessions
    server s1 127.0.0.1:$(node_port 1) check
    server s2 127.0.0.1:$(node_port 2) check
    server s3 127.0.0.1:$(node_port 3) check
EOF
}
