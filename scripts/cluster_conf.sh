# shellcheck shell=bash
# The configuration files of the HA test bed, sourced by scripts/cluster.sh: one Patroni YAML per
# PostgreSQL node and haproxy.cfg, written under $BED/conf, plus $BED/bed.env (the port base, so
# later commands find the same bed). The settings are the ones measured in issue 14's test-bed
# study: synchronous_mode + synchronous_mode_strict (every commit waits for one standby; no
# fallback to asynchronous), maximum_lag_on_failover 0, ttl 20 (Patroni's minimum) / loop_wait 2
# / retry_timeout 5 (loop_wait + 2*retry_timeout <= ttl), use_pg_rewind, and
# wal_retrieve_retry_interval 500ms (the default 5 s adds ~4 s to a hard failover: the replica
# that must become synchronous retries its connection to the new primary only that often).
# Values to quote for YAML: 'off' and 'on' (unquoted they are booleans and Patroni rejects them).
# haproxy sends clients to the node whose Patroni answers 200 on GET /primary, and closes their
# sessions as soon as that node is marked down.

# BED_PG_PARAMETERS="name=value,name=value": more PostgreSQL settings for every member (benchmarks
# try engine settings with it; values are quoted for YAML).
extra_pg_parameters() {
  local item
  local -a items
  IFS=',' read -r -a items <<<"${BED_PG_PARAMETERS:-}"
  for item in "${items[@]}"; do
    [ -n "$item" ] || continue
    printf "    %s: '%s'\n" "${item%%=*}" "${item#*=}"
  done
}

write_configs() {
  local i
  mkdir -p "$BED/conf"
  echo "BED_PORT_BASE=$BED_PORT_BASE" >"$BED/bed.env"
  for i in "${MEMBERS[@]}"; do
    cat >"$BED/conf/n$i.yml" <<EOF
scope: sluice-bed
namespace: /service/
name: n$i
log:
  level: INFO
  format: '%(asctime)s %(levelname)s: %(message)s'
restapi:
  listen: 127.0.0.1:$(rest_port "$i")
  connect_address: 127.0.0.1:$(rest_port "$i")
etcd3:
  hosts:
    - 127.0.0.1:$(etcd_client_port 1)
    - 127.0.0.1:$(etcd_client_port 2)
    - 127.0.0.1:$(etcd_client_port 3)
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 0
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_connections: 300
        max_wal_senders: 10
        max_replication_slots: 10
        max_worker_processes: 8
        wal_keep_size: 64MB
        wal_retrieve_retry_interval: 500ms
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$(pg_port "$i")
  connect_address: 127.0.0.1:$(pg_port "$i")
  data_dir: $BED/pg/n$i
  bin_dir: $PG_BIN
  pgpass: $BED/pg/pgpass-n$i
  authentication:
    superuser:
      username: postgres
      password: $PG_SUPERUSER_PASSWORD
    replication:
      username: replicator
      password: sluice-bed-repl
    rewind:
      username: rewinder
      password: sluice-bed-rewind
  parameters:
    unix_socket_directories: $BED/pg/sock
    shared_buffers: 32MB
    max_wal_size: 256MB
    min_wal_size: 64MB
    logging_collector: 'off'
$(extra_pg_parameters)
watchdog:
  mode: 'off'
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
  done
  cat >"$BED/conf/haproxy.cfg" <<EOF
global
    maxconn 1000
defaults
    mode tcp
    retries 2
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen stats
    mode http
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /
listen pg_primary
    bind 127.0.0.1:$HAPROXY_PORT
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s rise 1 fall 2 on-marked-down shutdown-sessions
    server n1 127.0.0.1:$(pg_port 1) maxconn 280 check port $(rest_port 1)
    server n2 127.0.0.1:$(pg_port 2) maxconn 280 check port $(rest_port 2)
    server n3 127.0.0.1:$(pg_port 3) maxconn 280 check port $(rest_port 3)
EOF
  haproxy_sluice_section >>"$BED/conf/haproxy.cfg"
}

