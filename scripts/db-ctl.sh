#!/usr/bin/env bash
# Stops or starts one of the test databases that scripts/services.sh started (same data dir and
# port), so tests can simulate an outage:
#
#   scripts/db-ctl.sh mysql|postgres stop|start|restart
#
# Reads SLUICE_TEST_MYSQL_DIR / SLUICE_TEST_MYSQL_PORT or SLUICE_TEST_PG_DIR / SLUICE_TEST_PG_PORT
# from the environment (exported by services_start).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"

usage() { echo "usage: scripts/db-ctl.sh mysql|postgres stop|start|restart" >&2; exit 2; }
[ "$#" -eq 2 ] || usage
case "$1" in
  mysql)
    : "${SLUICE_TEST_MYSQL_DIR:?not set: start the services with scripts/services.sh first}"
    : "${SLUICE_TEST_MYSQL_PORT:?not set}"
    start=mysql_daemon_start stop=mysql_daemon_stop
    ;;
  postgres)
    : "${SLUICE_TEST_PG_DIR:?not set: start the services with scripts/services.sh first}"
    : "${SLUICE_TEST_PG_PORT:?not set}"
    start=pg_daemon_start stop=pg_daemon_stop
    ;;
  *) usage ;;
esac
case "$2" in
  stop) "$stop" ;;
  start) "$start" ;;
  restart) "$stop"; "$start" ;;
  *) usage ;;
esac
