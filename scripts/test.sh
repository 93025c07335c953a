#!/usr/bin/env bash
# The project's test command (README; .ci/run calls it). It does all of its own set-up on a fresh
# machine and exits non-zero if any stage fails:
#
#   1. cargo fmt --check            formatting
#   2. cargo clippy -D warnings     lints (all targets, release)
#   3. services                     real services the tests need (scripts/services.sh: MariaDB,
#                                   PostgreSQL on private ports; stopped again on exit)
#   4. cargo test --workspace       Rust unit / handler / property / crash / sink tests (release)
#   5. cargo build -p sluice        the server binary
#   6. python venv                  pydatahub 2.29.0 + pytest from compat/requirements.txt (cached)
#   7. pytest compat/               pydatahub against a live `sluice serve` (first installs Debian's
#                                   chromium + chromium-driver when missing: the console's test)
#   8. cluster                      the HA test bed (scripts/cluster.sh: etcd, Patroni/PostgreSQL,
#                                   haproxy, s3s-fs; installed with apt-get when missing) and the
#                                   tests run against it, then three Sluice nodes on it behind
#                                   haproxy: compat's cluster_ok tests and scripts/cluster_kill.py;
#                                   the bed is brought down on any exit
#
# Everything is built in release mode so one set of artifacts serves every stage. Build output and
# the venv live outside the clone (CI runs in a fresh clone each time):
#   CARGO_TARGET_DIR   default /root/.cache/sluice/target
#   SLUICE_CACHE_DIR   default /root/.cache/sluice (venvs: venv-<hash of requirements + python>)
#
# Developer conveniences (CI uses none of them):
#   scripts/test.sh rust            stages 1-5 only
#   scripts/test.sh compat [ARGS]   stages 3, 5-7 only; ARGS go to pytest (e.g. -k records -x)
#   scripts/test.sh venv            stage 5 only (prints the venv to run pytest with by hand)
#   scripts/test.sh cluster         stage 8 only
#   PYTEST_ARGS="..."               extra pytest arguments for the full run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/sluice/target}"
SLUICE_CACHE_DIR="${SLUICE_CACHE_DIR:-/root/.cache/sluice}"
PYTHON="${PYTHON:-python3}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

MODE="${1:-all}"
if [ "$#" -gt 0 ]; then shift; fi
case "$MODE" in
  all | rust | compat | venv | cluster) ;;
  *)
    echo "usage: scripts/test.sh [all|rust|compat [pytest args...]|venv|cluster]" >&2
    exit 2
    ;;
esac

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"

STARTED_AT=$SECONDS
stage() {
  printf '\n==== [%s +%ss] %s ====\n' "$(date -u +%H:%M:%S)" "$((SECONDS - STARTED_AT))" "$*"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  cluster_down "$rc" || true
  services_stop || true
  if [ "$rc" -eq 0 ]; then
    stage "all stages passed"
  else
    stage "FAILED (exit $rc)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$SLUICE_CACHE_DIR" "$CARGO_TARGET_DIR"

rust_checks() {
  stage "cargo fmt --check"
  cargo fmt --all -- --check --color never

  stage "cargo clippy (release, all targets, -D warnings)"
  cargo clippy --workspace --all-targets --release -- -D warnings

  start_services

  stage "cargo test (release)"
  cargo test --workspace --release
}

SERVICES_UP=0
start_services() {
  if [ "$SERVICES_UP" -eq 0 ]; then
    stage "services"
    services_start
    SERVICES_UP=1
  fi
}

build_server() {
  SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice"
  if [ "${1:-}" = "from-tests" ] && [ -x "$SLUICE_BIN" ]; then
    # `cargo test --workspace` has just built the binary for the crash test, with the same
    # features; building `-p sluice` alone would unify features differently and rebuild the deps.
    stage "server binary (built by cargo test)"
  else
    stage "cargo build --release -p sluice"
    cargo build --release -p sluice
  fi
  if [ ! -x "$SLUICE_BIN" ]; then
    echo "error: $SLUICE_BIN was not built" >&2
    exit 1
  fi
  export SLUICE_BIN
  echo "server binary: $SLUICE_BIN"
}

python_venv() {
  stage "python venv (compat/requirements.txt)"
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; the conformance suite needs CPython 3 with venv and pip" >&2
    exit 1
  fi
  local key
  key="$({ cat compat/requirements.txt; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
  VENV="$SLUICE_CACHE_DIR/venv-$key"
  # One builder at a time; a venv counts only once the marker says pip finished.
  exec 9>"$SLUICE_CACHE_DIR/venv.lock"
  flock 9
  if [ -f "$VENV/.sluice-ready" ]; then
    echo "reusing $VENV"
  else
    echo "creating $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet -r compat/requirements.txt
    "$VENV/bin/python" -c 'import datahub, pytest; assert datahub.__version__ == "2.29.0", datahub.__version__'
    touch "$VENV/.sluice-ready"
  fi
  flock -u 9
  exec 9>&-
  "$VENV/bin/python" -c 'import datahub, sys; print("python", sys.version.split()[0], "pydatahub", datahub.__version__)'
}

# issue 13: console — compat/test_console.py drives Debian's chromium through chromium-driver
# (offline; the test fails without them), so install both when missing.
browser_packages() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  stage "apt-get install chromium chromium-driver (console browser test)"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: /usr/bin/chromium or /usr/bin/chromedriver is missing and there is no apt-get" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
}

run_compat() {
  start_services
  browser_packages

  stage "pytest compat/ (pydatahub 2.29.0 against sluice serve)"
  local rc=0
  # pytest exits 5 when it collected no test: that is a failure here too.
  "$VENV/bin/python" -m pytest compat/ -q "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "pytest failed (exit $rc)" >&2
    exit "$rc"
  fi
}

# issue 14: HA test bed — a private bed (its own dir, the first free block of ports from 24000),
# the cluster tests against it, then `down --purge`; cleanup() brings it down on any exit.
CLUSTER_BED=""
run_cluster() {
  stage "cluster test bed up (scripts/cluster.sh up)"
  CLUSTER_BED="$(mktemp -d /tmp/sluice-bed-test.XXXXXX)"
  BED="$CLUSTER_BED" BED_PORT_BASE=auto bash scripts/cluster.sh up
  eval "$(BED="$CLUSTER_BED" bash scripts/cluster.sh env)"
  # Tests that need the bed live in crates/sluice-cluster/tests/ha_*.rs. So that `cargo test
  # --workspace` (no bed) does not run them, they may require a feature `ha-bed`
  # (`[[test]] required-features = ["ha-bed"]`); this stage turns it on when the crate has it.
  if compgen -G "crates/sluice-cluster/tests/ha_*.rs" >/dev/null; then
    local features=()
    if grep -q '^ha-bed *=' crates/sluice-cluster/Cargo.toml; then features=(--features ha-bed); fi
    stage "cargo test -p sluice-cluster --test 'ha_*' (against the bed)"
    cargo test --release -p sluice-cluster "${features[@]}" --test 'ha_*'
  fi
  stage "cluster bed tests (scripts/cluster_check.py: faults under load, the sync-wait trap)"
  timeout 720 /usr/bin/python3 scripts/cluster_check.py
  cluster_nodes_tests
  cluster_down 0
}

# issue 14, part C: three `sluice serve --cluster` nodes on the bed behind haproxy; the compat
# tests marked cluster_ok (compat/cluster_ok.py) through haproxy, then the node-kill, zombie and
# engine-failover tests (scripts/cluster_kill.py; CLUSTER_KILL_MINUTES, default 2).
cluster_nodes_tests() {
  if [ -z "${SLUICE_BIN:-}" ]; then build_server; fi
  if [ -z "${VENV:-}" ]; then python_venv; fi
  if [ "$SERVICES_UP" -eq 0 ]; then SLUICE_SERVICES=(mysql); fi # the kill test's sink
  start_services
  local creds
  creds="$(cd compat && "$VENV/bin/python" -c 'import util; print(util.ACCESS_ID, util.ACCESS_KEY)')"
  stage "sluice nodes up (scripts/cluster.sh nodes-up 3, compat credentials)"
  BED="$CLUSTER_BED" SLUICE_BED_ACCESS_ID="${creds% *}" SLUICE_BED_ACCESS_KEY="${creds#* }" \
    bash scripts/cluster.sh nodes-up 3
  eval "$(BED="$CLUSTER_BED" bash scripts/cluster.sh env)"
  stage "pytest compat/ -m cluster_ok through haproxy (3 nodes, round robin)"
  local rc=0
  SLUICE_EXTERNAL_ENDPOINT="$SLUICE_ENDPOINT" SLUICE_EXTERNAL_ACCESS_ID="$SLUICE_ACCESS_ID" \
    SLUICE_EXTERNAL_ACCESS_KEY="$SLUICE_ACCESS_KEY" SLUICE_EXTERNAL_LOG_GLOB="$CLUSTER_BED/log/sluice-s*.log" \
    timeout 900 "$VENV/bin/python" -m pytest compat/ -q -m cluster_ok || rc=$?
  # the fault tests run even when some compat test failed: both results are worth having
  stage "cluster fault tests (scripts/cluster_kill.py: kill -9 nodes, zombie node, engine failover)"
  local fault_rc=0
  (cd scripts && timeout 1200 "$VENV/bin/python" cluster_kill.py kill zombie failover) || fault_rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "pytest against the cluster failed (exit $rc)" >&2
    exit "$rc"
  fi
  if [ "$fault_rc" -ne 0 ]; then
    echo "cluster fault tests failed (exit $fault_rc)" >&2
    exit "$fault_rc"
  fi
}

cluster_down() { # exit status so far: on a failure the bed's logs are shown first
  [ -n "$CLUSTER_BED" ] || return 0
  if [ "${1:-0}" -ne 0 ]; then BED="$CLUSTER_BED" bash scripts/cluster.sh logs || true; fi
  stage "cluster test bed down"
  BED="$CLUSTER_BED" bash scripts/cluster.sh down --purge
  CLUSTER_BED=""
}

case "$MODE" in
  all)
    rust_checks
    build_server from-tests
    python_venv
    # shellcheck disable=SC2086
    run_compat ${PYTEST_ARGS:-}
    run_cluster
    ;;
  rust)
    rust_checks
    build_server
    ;;
  compat)
    build_server
    python_venv
    run_compat "$@"
    ;;
  cluster)
    run_cluster
    ;;
  venv)
    python_venv
    echo "venv: $VENV (e.g. SLUICE_BIN=$CARGO_TARGET_DIR/release/sluice $VENV/bin/python -m pytest compat/ -q)"
    ;;
esac
