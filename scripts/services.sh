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

SLUICE_SERVICES=()
SLUICE_SERVICES_DIR="${SLUICE_SERVICES_DIR:-}"
_SLUICE_SERVICES_RUNNING=()

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
}
