# shellcheck shell=bash
# Real services the test suites need (MariaDB, PostgreSQL, s3s-fs, ...), started on private
# loopback ports with private data dirs under $SLUICE_SERVICES_DIR, and stopped again.
#
# Sourced by scripts/test.sh, which calls `services_start` before the test stages and
# `services_stop` from its EXIT trap. Nothing here installs system-wide daemons or uses systemd.
#
# Adding a service <name> (later issues):
#   1. write `service_<name>_start`: install it if missing (apt-get / pip / cargo install into
#      the cache dir), start it in the background on a free 127.0.0.1 port, wait until it answers,
#      export the variables the tests read (e.g. SLUICE_TEST_MARIADB_PORT), and call
#      `services_started <name>` so that it is stopped at the end;
#   2. write `service_<name>_stop`: stop exactly what step 1 started (by pid), never by name;
#   3. add <name> to SLUICE_SERVICES below.
# A test that needs a service and does not find its variables must fail, not skip.

SLUICE_SERVICES=(mysql postgres mysql_tls postgres_tls es s3)
SLUICE_SERVICES_DIR="${SLUICE_SERVICES_DIR:-}"
_SLUICE_SERVICES_RUNNING=()
_SLUICE_SERVICES_TMP=""

# Remember that a service was started, so services_stop stops it (in reverse order).
services_started() {
  _SLUICE_SERVICES_RUNNING+=("$1")
}

# A free TCP port on 127.0.0.1 (the OS picks it; small race, fine for tests).
services_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

services_start() {
  if [ "${#SLUICE_SERVICES[@]}" -eq 0 ]; then
    echo "no external services configured"
    return 0
  fi
  if [ -z "$SLUICE_SERVICES_DIR" ]; then
    SLUICE_SERVICES_DIR="$(mktemp -d /tmp/sluice-services.XXXXXX)"
    _SLUICE_SERVICES_TMP="$SLUICE_SERVICES_DIR"
  fi
  export SLUICE_SERVICES_DIR
  local name
  for name in "${SLUICE_SERVICES[@]}"; do
    echo "starting service: $name"
    "service_${name}_start"
  done
}

services_stop() {
  local i name
  for ((i = ${#_SLUICE_SERVICES_RUNNING[@]} - 1; i >= 0; i--)); do
    name="${_SLUICE_SERVICES_RUNNING[$i]}"
    echo "stopping service: $name"
    "service_${name}_stop" || echo "warning: stopping $name failed" >&2
  done
  _SLUICE_SERVICES_RUNNING=()
  # A data dir we made ourselves goes away with the services.
  if [ -n "${_SLUICE_SERVICES_TMP:-}" ]; then
    rm -rf "$_SLUICE_SERVICES_TMP"
    _SLUICE_SERVICES_TMP=""
  fi
}

# Installs Debian packages when a command is missing (CI runs as root with no stdin).
services_apt_install() {
  echo "installing: $*"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: need root to apt-get install $*" >&2
    return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null >/dev/null; }
}

# Waits until "$@" succeeds (up to ~30 s).
services_wait() {
  local i
  for ((i = 0; i < 300; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "error: timed out waiting for: $*" >&2
  return 1
}

# ---- MariaDB (SINK_MYSQL / SINK_ADS) ----------------------------------------------------
# State: $SLUICE_TEST_MYSQL_DIR (data dir, socket, pid file, log), $SLUICE_TEST_MYSQL_PORT.
# mysql_daemon_start / mysql_daemon_stop restart the same server (scripts/db-ctl.sh uses them
# to simulate outages).

mysql_daemon_start() {
  local d="$SLUICE_TEST_MYSQL_DIR"
  mariadbd --no-defaults --user=root --datadir="$d/data" --socket="$d/sock" \
    --pid-file="$d/mariadbd.pid" --port="$SLUICE_TEST_MYSQL_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 \
    --max-connections=500 --log-error="$d/error.log" </dev/null >>"$d/stdout.log" 2>&1 &
  echo $! >"$d/daemon.pid"
  services_wait mariadb --no-defaults --protocol=socket --socket="$d/sock" -uroot -e 'select 1'
}

mysql_daemon_stop() {
  local d="$SLUICE_TEST_MYSQL_DIR" pid i
  pid="$(cat "$d/daemon.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$d/daemon.pid"
}

service_mysql_start() {
  command -v mariadbd >/dev/null 2>&1 || services_apt_install mariadb-server mariadb-client
  export SLUICE_TEST_MYSQL_DIR="$SLUICE_SERVICES_DIR/mysql"
  mkdir -p "$SLUICE_TEST_MYSQL_DIR"
  mariadb-install-db --no-defaults --user=root --datadir="$SLUICE_TEST_MYSQL_DIR/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$SLUICE_TEST_MYSQL_DIR/install.log" 2>&1 ||
    { cat "$SLUICE_TEST_MYSQL_DIR/install.log" >&2; return 1; }
  export SLUICE_TEST_MYSQL_PORT="${SLUICE_TEST_MYSQL_PORT:-$(services_free_port)}"
  mysql_daemon_start || { tail -20 "$SLUICE_TEST_MYSQL_DIR/error.log" >&2; return 1; }
  services_started mysql
  mariadb --no-defaults --protocol=socket --socket="$SLUICE_TEST_MYSQL_DIR/sock" -uroot -e \
    "CREATE DATABASE IF NOT EXISTS sluice_test CHARACTER SET utf8mb4;
     CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
     GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
     CREATE USER IF NOT EXISTS 'sluice'@'127.0.0.1' IDENTIFIED BY 'sluice';
     GRANT ALL ON sluice_test.* TO 'sluice'@'127.0.0.1';"
  export SLUICE_TEST_MYSQL_HOST=127.0.0.1 SLUICE_TEST_MYSQL_USER=sluice
  export SLUICE_TEST_MYSQL_PASSWORD=sluice SLUICE_TEST_MYSQL_DATABASE=sluice_test
  export SLUICE_TEST_MYSQL_URL="mysql://root@127.0.0.1:$SLUICE_TEST_MYSQL_PORT/sluice_test"
  echo "mariadb on 127.0.0.1:$SLUICE_TEST_MYSQL_PORT ($SLUICE_TEST_MYSQL_DIR)"
}

service_mysql_stop() {
  mysql_daemon_stop
}

# ---- PostgreSQL (SINK_HOLOGRES) ---------------------------------------------------------
# Runs as the postgres user (it refuses root); the data dir is owned by postgres.

pg_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin/"$1"; do
    if [ -x "$b" ]; then echo "$b"; return 0; fi
  done
  command -v "$1"
}

pg_daemon_start() {
  runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$SLUICE_TEST_PG_DIR/data" \
    -l "$SLUICE_TEST_PG_DIR/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $SLUICE_TEST_PG_PORT -k $SLUICE_TEST_PG_DIR -c fsync=off -c max_connections=300" \
    start </dev/null >/dev/null
}

pg_daemon_stop() {
  runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$SLUICE_TEST_PG_DIR/data" -m fast stop \
    </dev/null >/dev/null 2>&1 || true
}

service_postgres_start() {
  [ -n "$(pg_bin initdb 2>/dev/null)" ] && id postgres >/dev/null 2>&1 ||
    services_apt_install postgresql
  chmod 755 "$SLUICE_SERVICES_DIR"
  export SLUICE_TEST_PG_DIR="$SLUICE_SERVICES_DIR/postgres"
  mkdir -p "$SLUICE_TEST_PG_DIR"
  chown postgres: "$SLUICE_TEST_PG_DIR"
  runuser -u postgres -- "$(pg_bin initdb)" -D "$SLUICE_TEST_PG_DIR/data" -A trust -U postgres \
    </dev/null >"$SLUICE_TEST_PG_DIR/initdb.log" 2>&1 || { cat "$SLUICE_TEST_PG_DIR/initdb.log" >&2; return 1; }
  export SLUICE_TEST_PG_PORT="${SLUICE_TEST_PG_PORT:-$(services_free_port)}"
  pg_daemon_start || { tail -20 "$SLUICE_TEST_PG_DIR/server.log" >&2; return 1; }
  services_started postgres
  psql -X -q -h 127.0.0.1 -p "$SLUICE_TEST_PG_PORT" -U postgres -d postgres \
    -c "CREATE DATABASE sluice_test" -c "CREATE USER sluice PASSWORD 'sluice' SUPERUSER" >/dev/null
  export SLUICE_TEST_PG_HOST=127.0.0.1 SLUICE_TEST_PG_USER=sluice SLUICE_TEST_PG_PASSWORD=sluice
  export SLUICE_TEST_PG_DATABASE=sluice_test
  export SLUICE_TEST_PG_URL="postgres://postgres@127.0.0.1:$SLUICE_TEST_PG_PORT/sluice_test"
  echo "postgresql on 127.0.0.1:$SLUICE_TEST_PG_PORT ($SLUICE_TEST_PG_DIR)"
}

service_postgres_stop() {
  pg_daemon_stop
}

# ---- TLS-only MariaDB and PostgreSQL (issue 9: connector TLS) ----------------------------
# Servers that refuse plaintext over TCP, with a certificate (localhost, 127.0.0.1) signed by a
# test CA made here with openssl. Exported: SLUICE_TEST_TLS_CA (the CA that signed the
# servers), SLUICE_TEST_TLS_OTHER_CA (a CA that signed nothing), SLUICE_TEST_MYSQL_TLS_PORT,
# SLUICE_TEST_PG_TLS_PORT (same users, passwords and database as the plaintext servers).

# Makes the test PKI once per services dir (EC P-256: fast to generate).
services_tls_pki() {
  local d="$SLUICE_SERVICES_DIR/pki"
  export SLUICE_TEST_TLS_CA="$d/ca.pem" SLUICE_TEST_TLS_OTHER_CA="$d/other-ca.pem"
  [ -f "$d/server.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || services_apt_install openssl
  mkdir -p "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ca_ext=(
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
  (
    cd "$d" &&
      openssl req -x509 -nodes -days 2 "${ec[@]}" -keyout ca.key -out ca.pem \
        -subj "/CN=Sluice services test CA" "${ca_ext[@]}" &&
      openssl req -x509 -nodes -days 2 "${ec[@]}" -keyout other-ca.key -out other-ca.pem \
        -subj "/CN=Sluice services other CA" "${ca_ext[@]}" &&
      openssl req -nodes "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" &&
      printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.pem
  ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
}

service_mysql_tls_start() {
  command -v mariadbd >/dev/null 2>&1 || services_apt_install mariadb-server mariadb-client
  services_tls_pki || return 1
  local d="$SLUICE_SERVICES_DIR/mysql-tls" pki="$SLUICE_SERVICES_DIR/pki"
  export SLUICE_TEST_MYSQL_TLS_DIR="$d"
  mkdir -p "$d"
  mariadb-install-db --no-defaults --user=root --datadir="$d/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1 ||
    { cat "$d/install.log" >&2; return 1; }
  export SLUICE_TEST_MYSQL_TLS_PORT="${SLUICE_TEST_MYSQL_TLS_PORT:-$(services_free_port)}"
  mariadbd --no-defaults --user=root --datadir="$d/data" --socket="$d/sock" \
    --pid-file="$d/mariadbd.pid" --port="$SLUICE_TEST_MYSQL_TLS_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --innodb-buffer-pool-size=32M --log-error="$d/error.log" \
    --ssl-ca="$pki/ca.pem" --ssl-cert="$pki/server.pem" --ssl-key="$pki/server.key" \
    --require-secure-transport=ON </dev/null >>"$d/stdout.log" 2>&1 &
  echo $! >"$d/daemon.pid"
  services_wait mariadb --no-defaults --protocol=socket --socket="$d/sock" -uroot -e 'select 1' ||
    { tail -20 "$d/error.log" >&2; return 1; }
  services_started mysql_tls
  mariadb --no-defaults --protocol=socket --socket="$d/sock" -uroot -e \
    "CREATE DATABASE IF NOT EXISTS sluice_test CHARACTER SET utf8mb4;
     CREATE USER IF NOT EXISTS 'sluice'@'127.0.0.1' IDENTIFIED BY 'sluice';
     GRANT ALL ON sluice_test.* TO 'sluice'@'127.0.0.1';"
  echo "mariadb (TLS only) on 127.0.0.1:$SLUICE_TEST_MYSQL_TLS_PORT ($d)"
}

service_mysql_tls_stop() {
  local d="$SLUICE_TEST_MYSQL_TLS_DIR" pid i
  pid="$(cat "$d/daemon.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$d/daemon.pid"
}

service_postgres_tls_start() {
  [ -n "$(pg_bin initdb 2>/dev/null)" ] && id postgres >/dev/null 2>&1 ||
    services_apt_install postgresql
  services_tls_pki || return 1
  chmod 755 "$SLUICE_SERVICES_DIR"
  local d="$SLUICE_SERVICES_DIR/postgres-tls" pki="$SLUICE_SERVICES_DIR/pki"
  export SLUICE_TEST_PG_TLS_DIR="$d"
  mkdir -p "$d"
  # The server reads its key as postgres, and only from a private file.
  install -o postgres -m 0600 "$pki/server.key" "$d/server.key"
  install -o postgres -m 0644 "$pki/server.pem" "$d/server.pem"
  chown postgres: "$d"
  runuser -u postgres -- "$(pg_bin initdb)" -D "$d/data" -A trust -U postgres \
    </dev/null >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; return 1; }
  # Only TLS over TCP (and the local socket for set-up): a plaintext TCP client is refused.
  printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 md5" \
    >"$d/data/pg_hba.conf"
  export SLUICE_TEST_PG_TLS_PORT="${SLUICE_TEST_PG_TLS_PORT:-$(services_free_port)}"
  runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$d/data" -l "$d/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $SLUICE_TEST_PG_TLS_PORT -k $d -c fsync=off -c ssl=on -c ssl_cert_file=$d/server.pem -c ssl_key_file=$d/server.key" \
    start </dev/null >/dev/null || { tail -20 "$d/server.log" >&2; return 1; }
  services_started postgres_tls
  psql -X -q -h "$d" -p "$SLUICE_TEST_PG_TLS_PORT" -U postgres -d postgres \
    -c "CREATE DATABASE sluice_test" -c "CREATE USER sluice PASSWORD 'sluice' SUPERUSER" >/dev/null
  echo "postgresql (TLS only) on 127.0.0.1:$SLUICE_TEST_PG_TLS_PORT ($d)"
}

service_postgres_tls_stop() {
  runuser -u postgres -- "$(pg_bin pg_ctl)" -w -t 60 -D "$SLUICE_TEST_PG_TLS_DIR/data" -m fast \
    stop </dev/null >/dev/null 2>&1 || true
}

# ---- osmem-server (SINK_ES; issue 11) ---------------------------------------------------
# An in-memory OpenSearch API emulator from PyPI; its binary ships inside the package, so it
# is pip-installed once into a venv in the cache dir. Exports SLUICE_TEST_ES_ENDPOINT
# (http://127.0.0.1:P). es_daemon_start / es_daemon_stop restart it (an empty cluster again).
SLUICE_OSMEM_VERSION=0.1.6

es_binary() {
  local venv="${SLUICE_CACHE_DIR:-/root/.cache/sluice}/osmem-$SLUICE_OSMEM_VERSION"
  if [ ! -f "$venv/.sluice-ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 &&
      "$venv/bin/python" -m pip install --quiet "osmem-server==$SLUICE_OSMEM_VERSION" >&2 &&
      touch "$venv/.sluice-ready" || return 1
  fi
  ls "$venv"/lib/python3*/site-packages/osmem_server/bin/osmem-server
}

es_daemon_start() {
  local d="$SLUICE_TEST_ES_DIR"
  "$SLUICE_TEST_ES_BIN" -addr "127.0.0.1:$SLUICE_TEST_ES_PORT" -no-stdin-watch -no-ja \
    </dev/null >>"$d/osmem.log" 2>&1 &
  echo $! >"$d/daemon.pid"
  services_wait curl -sf "http://127.0.0.1:$SLUICE_TEST_ES_PORT/"
}

es_daemon_stop() {
  local pid i
  pid="$(cat "$SLUICE_TEST_ES_DIR/daemon.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$SLUICE_TEST_ES_DIR/daemon.pid"
}

service_es_start() {
  export SLUICE_TEST_ES_DIR="$SLUICE_SERVICES_DIR/es"
  mkdir -p "$SLUICE_TEST_ES_DIR"
  SLUICE_TEST_ES_BIN="$(es_binary)" || { echo "error: cannot install osmem-server" >&2; return 1; }
  export SLUICE_TEST_ES_BIN
  export SLUICE_TEST_ES_PORT="${SLUICE_TEST_ES_PORT:-$(services_free_port)}"
  es_daemon_start || { tail -20 "$SLUICE_TEST_ES_DIR/osmem.log" >&2; return 1; }
  services_started es
  export SLUICE_TEST_ES_ENDPOINT="http://127.0.0.1:$SLUICE_TEST_ES_PORT"
  echo "osmem-server on $SLUICE_TEST_ES_ENDPOINT ($SLUICE_TEST_ES_DIR)"
}

service_es_stop() {
  es_daemon_stop
}

# ---- S3-compatible object storage: s3s-fs (issue 10: SINK_OSS, SINK_ODPS lake files) -----
# s3s-fs 0.14.1 (newer versions need a newer rustc), installed once into the cache dir outside
# the clone. Objects land as plain files at $SLUICE_TEST_S3_DIR/<bucket>/<key>; a bucket is a
# directory (the tests create theirs, through S3 or with mkdir). Exported:
# SLUICE_TEST_S3_ENDPOINT (http://127.0.0.1:P), SLUICE_TEST_S3_ACCESS_KEY,
# SLUICE_TEST_S3_SECRET_KEY, SLUICE_TEST_S3_DIR, SLUICE_TEST_S3_PORT.

s3s_fs_bin() {
  local root="${SLUICE_CACHE_DIR:-/root/.cache/sluice}/s3s-fs"
  if [ ! -x "$root/bin/s3s-fs" ]; then
    echo "installing s3s-fs 0.14.1 into $root (about 1.5 min, once)" >&2
    mkdir -p "$root"
    # Built outside the clone's target dir, so the workspace's build stays untouched.
    (cd / && CARGO_TARGET_DIR="$root/target" cargo install s3s-fs --version 0.14.1 \
      --features binary --locked --root "$root" </dev/null >"$root/install.log" 2>&1) ||
      { tail -20 "$root/install.log" >&2; return 1; }
  fi
  echo "$root/bin/s3s-fs"
}

service_s3_start() {
  local bin d
  bin="$(s3s_fs_bin)" || return 1
  d="$SLUICE_SERVICES_DIR/s3"
  export SLUICE_TEST_S3_DIR="$d/data"
  mkdir -p "$SLUICE_TEST_S3_DIR"
  export SLUICE_TEST_S3_PORT="${SLUICE_TEST_S3_PORT:-$(services_free_port)}"
  export SLUICE_TEST_S3_ACCESS_KEY="sluice-test-ak" SLUICE_TEST_S3_SECRET_KEY="sluice-test-sk"
  export SLUICE_TEST_S3_ENDPOINT="http://127.0.0.1:$SLUICE_TEST_S3_PORT"
  "$bin" --host 127.0.0.1 --port "$SLUICE_TEST_S3_PORT" --access-key "$SLUICE_TEST_S3_ACCESS_KEY" \
    --secret-key "$SLUICE_TEST_S3_SECRET_KEY" "$SLUICE_TEST_S3_DIR" </dev/null >"$d/s3s-fs.log" 2>&1 &
  echo $! >"$d/daemon.pid"
  services_wait python3 -c "import socket; socket.create_connection(('127.0.0.1', $SLUICE_TEST_S3_PORT), 1)" ||
    { tail -20 "$d/s3s-fs.log" >&2; return 1; }
  services_started s3
  echo "s3s-fs on $SLUICE_TEST_S3_ENDPOINT ($SLUICE_TEST_S3_DIR)"
}

service_s3_stop() {
  local d="$SLUICE_SERVICES_DIR/s3" pid i
  pid="$(cat "$d/daemon.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$d/daemon.pid"
}
