#!/usr/bin/python3
"""Tests of the HA test bed (scripts/cluster.sh), run by `scripts/test.sh cluster`.

They drive the bed's fault commands while a writer INSERTs through haproxy, and check what issue 14
needs from the engines before Sluice builds on them:
  * every acknowledged INSERT survives a switchover, a hard kill of the primary, a kill of the
    synchronous standby and a kill of an etcd member (0 lost), and writes resume within 60 s;
  * the trap: cancelling a commit that waits for synchronous replication returns SUCCESS and
    leaves the row visible on the primary although the synchronous standby never received it.
    That is why Sluice's append path must never cancel a statement or give it a server-side
    timeout: an "acknowledged" append could then vanish on failover.
  * the archive's s3s-fs takes and returns an object.

Runs with Debian's /usr/bin/python3 (python3-psycopg2, installed by scripts/cluster.sh), against
the bed named by the environment `scripts/cluster.sh env` prints (SLUICE_TEST_CLUSTER_*); a
missing variable or an unreachable bed is a failure. Prints one `FIGURE name=value` line per
measured time. usage: cluster_check.py [-k SUBSTRING]
"""
import argparse
import hashlib
import os
import subprocess
import sys
import threading
import time
import traceback

import psycopg2

RESUME_BOUND_S = 60.0  # writes must resume within this after a fault (CI bound; issue 14)
PROMPT_S = 0.5  # an INSERT slower than this counts as a stall when measuring unavailability


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"error: {name} is not set (eval \"$(scripts/cluster.sh env)\" first)")
    return value


SCRIPT = env("SLUICE_TEST_CLUSTER_SCRIPT")
BED = env("SLUICE_TEST_CLUSTER_BED")
PG_PORT = int(env("SLUICE_TEST_CLUSTER_PG_PORT"))
PG_PASSWORD = env("SLUICE_TEST_CLUSTER_PG_PASSWORD")
S3_ENDPOINT = env("SLUICE_TEST_CLUSTER_S3_ENDPOINT")
S3_BUCKET = env("SLUICE_TEST_CLUSTER_S3_BUCKET")
S3_ACCESS_KEY = env("SLUICE_TEST_CLUSTER_S3_ACCESS_KEY")
S3_SECRET_KEY = env("SLUICE_TEST_CLUSTER_S3_SECRET_KEY")
S3_DIR = env("SLUICE_TEST_CLUSTER_S3_DIR")

FIGURES = []


def figure(name, value):
    FIGURES.append((name, value))
    print(f"FIGURE {name}={value}", flush=True)


def bed(*args, timeout=150):
    """Runs one scripts/cluster.sh command; returns its stdout (the member it hit, a URL...)."""
    out = subprocess.run([SCRIPT, *args], stdout=subprocess.PIPE, timeout=timeout, check=True,
                         text=True, env={**os.environ, "BED": BED})
    return out.stdout.strip()


def connect(app="cluster_check"):
    """A fresh autocommit connection to the primary through haproxy."""
    conn = psycopg2.connect(host="127.0.0.1", port=PG_PORT, dbname="sluice", user="postgres",
                            password=PG_PASSWORD, connect_timeout=2, application_name=app,
                            keepalives=1, keepalives_idle=5, keepalives_interval=2,
                            keepalives_count=3)
    conn.autocommit = True
    return conn


def query(sql, args=None, attempts=60):
    """One query on the primary, retried (1 s apart) while a failover is still settling."""
    for attempt in range(attempts):
        try:
            conn = connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall() if cur.description else None
            finally:
                conn.close()
        except psycopg2.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


class Writer(threading.Thread):
    """INSERTs one row every `interval` s through haproxy and records every attempt.

    An attempt is acknowledged only when the INSERT returned without error and without the
    "canceling wait for synchronous replication" warning. The writer never cancels a statement
    (see test_cancelled_sync_wait_exposes_unreplicated_commit); it reconnects after an error."""

    def __init__(self, table, interval=0.02):
        super().__init__(daemon=True)
        self.table, self.interval = table, interval
        self.attempts = []  # (seq, t_start, t_end, status)
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        conn, seq = None, 0
        while not self.stop_flag.is_set():
            seq += 1
            t0, status = time.time(), "fail"
            try:
                if conn is None:
                    conn = connect("cluster_check_writer")
                del conn.notices[:]
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (seq) VALUES (%s)", (seq,))
                cancelled = any("synchronous replication" in n for n in conn.notices)
                status = "cancelled" if cancelled else "ok"
            except psycopg2.Error:
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
            t1 = time.time()
            with self.lock:
                self.attempts.append((seq, t0, t1, status))
            time.sleep(max(0.0, self.interval - (t1 - t0)))
        if conn is not None:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.attempts)

    def resumed_after(self, event):
        """(first bad attempt, first prompt success after it) once writes resumed, else None."""
        rows = self.snapshot()
        bad = next((r for r in rows if r[2] >= event and (r[3] != "ok" or r[2] - r[1] > PROMPT_S)),
                   None)
        if bad is None:
            return None
        good = next((r for r in rows if r[1] >= bad[1] and r[3] == "ok" and r[2] - r[1] <= PROMPT_S),
                    None)
        return (bad, good) if good else None

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=90)
        if self.is_alive():
            raise AssertionError("the writer's INSERT hung for more than 90 s")


def new_table(name):
    query(f"DROP TABLE IF EXISTS {name}")
    query(f"CREATE TABLE {name} (seq bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")


def check_nothing_lost(writer, table, label):
    rows = writer.snapshot()
    acked = {r[0] for r in rows if r[3] == "ok"}
    failed = {r[0] for r in rows if r[3] == "fail"}
    present = {r[0] for r in query(f"SELECT seq FROM {table}")}
    missing = sorted(acked - present)
    print(f"  {label}: {len(rows)} INSERTs, {len(acked)} acknowledged, {len(failed)} failed, "
          f"{len(present & failed)} failed-but-committed (ambiguous, allowed), "
          f"{len(missing)} acknowledged but missing", flush=True)
    assert acked, f"{label}: no INSERT was acknowledged at all"
    assert not missing, f"{label}: acknowledged INSERTs lost: {missing[:20]}"
    assert not any(r[3] == "cancelled" for r in rows), f"{label}: a commit wait was cancelled"


def fault_under_load(label, command, expect_outage, settle=3.0):
    """Runs a fault command under a writer; checks 0 acknowledged INSERTs lost and that writes
    resume within RESUME_BOUND_S; returns (member hit, event time, resume time or None)."""
    bed("wait-healthy", "180", timeout=200)
    table = "bed_" + label.replace("-", "_")
    new_table(table)
    writer = Writer(table)
    writer.start()
    try:
        time.sleep(2.0)
        event = time.time()
        member = bed(*command)
        deadline = event + RESUME_BOUND_S + 30
        while time.time() < deadline:
            rows = writer.snapshot()
            oks_after = [r for r in rows if r[1] > event + 0.2 and r[3] == "ok"]
            if writer.resumed_after(event) or (not expect_outage and len(oks_after) > 100):
                break
            time.sleep(0.2)
        time.sleep(settle)
    finally:
        writer.stop()
    window = writer.resumed_after(event)
    oks_after = [r for r in writer.snapshot() if r[1] > event and r[3] == "ok"]
    assert oks_after, f"{label}: no INSERT succeeded after the fault"
    resume = None
    if window:
        bad, good = window
        resume = round(good[2] - event, 3)
        figure(f"{label}_write_unavailable_s", round(good[2] - bad[1], 3))
        figure(f"{label}_event_to_first_ack_s", resume)
        assert resume <= RESUME_BOUND_S, f"{label}: writes resumed only {resume} s after the fault"
    elif expect_outage:
        raise AssertionError(f"{label}: writes did not resume within {RESUME_BOUND_S + 30} s")
    else:
        figure(f"{label}_write_unavailable_s", 0)
    stalls = [r[2] - r[1] for r in writer.snapshot() if r[1] >= event - 1]
    figure(f"{label}_longest_insert_s", round(max(stalls), 3))
    check_nothing_lost(writer, table, label)
    return member, event, resume


# ---- tests ----------------------------------------------------------------------------------

def test_sync_commit_through_haproxy():
    """The bed is up: the primary behind haproxy commits synchronously to one standby."""
    bed("wait-healthy", "120", timeout=140)
    rows = query("SELECT application_name, sync_state FROM pg_stat_replication "
                 "WHERE state = 'streaming' ORDER BY 1")
    assert [s for _, s in rows].count("sync") == 1 and len(rows) == 2, rows
    assert query("SHOW synchronous_commit")[0][0] == "on"
    new_table("bed_smoke")
    query("INSERT INTO bed_smoke (seq) VALUES (1)")
    assert query("SELECT count(*) FROM bed_smoke")[0][0] == 1


def test_archive_bucket_takes_and_returns_an_object():
    """s3s-fs serves the archive bucket (SigV4, the bed's keys)."""
    key, body = "bed-check/probe.bin", os.urandom(4096)
    url = f"{S3_ENDPOINT}/{S3_BUCKET}/{key}"
    sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{S3_ACCESS_KEY}:{S3_SECRET_KEY}"]
    sha = ["-H", "x-amz-content-sha256: " + hashlib.sha256(body).hexdigest()]
    subprocess.run(["curl", "-sSf", "--max-time", "10", *sig, *sha, "-X", "PUT", "--data-binary",
                    "@-", url], input=body, check=True, stdout=subprocess.DEVNULL, timeout=20)
    empty = ["-H", "x-amz-content-sha256: " + hashlib.sha256(b"").hexdigest()]
    got = subprocess.run(["curl", "-sSf", "--max-time", "10", *sig, *empty, url], check=True,
                         stdout=subprocess.PIPE, timeout=20).stdout
    assert got == body, "the object read back differs"
    with open(os.path.join(S3_DIR, S3_BUCKET, key), "rb") as f:
        assert f.read() == body
    bad = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                          url], stdout=subprocess.PIPE, timeout=20, text=True).stdout
    assert bad == "403", f"an unsigned GET answered {bad}, not 403"


def test_switchover_loses_no_acknowledged_insert():
    before = query("SELECT inet_server_port()")[0][0]
    fault_under_load("switchover", ["switchover"], expect_outage=True)
    after = query("SELECT inet_server_port()")[0][0]
    assert after != before, f"the primary is still on port {before} after the switchover"


def test_kill_primary_loses_no_acknowledged_insert():
    before = query("SELECT inet_server_port()")[0][0]
    victim, _, _ = fault_under_load("kill-primary", ["kill-primary"], expect_outage=True)
    after = query("SELECT inet_server_port()")[0][0]
    assert after != before, f"the primary is still on port {before} after killing {victim}"
    t0 = time.time()
    bed("restart", victim)
    bed("wait-healthy", "180", timeout=200)  # pg_rewind + rejoin (ha-testbed.md: 3-16 s)
    figure("kill-primary_rejoin_s", round(time.time() - t0, 1))


def test_kill_sync_standby_loses_no_acknowledged_insert():
    victim, _, _ = fault_under_load("kill-sync-standby", ["kill-sync-standby"], expect_outage=False)
    bed("restart", victim)
    bed("wait-healthy", "180", timeout=200)


def test_kill_etcd_member_loses_no_acknowledged_insert():
    victim, _, _ = fault_under_load("kill-etcd", ["kill-etcd"], expect_outage=False)
    bed("restart", victim)
    bed("wait-healthy", "120", timeout=140)


def test_cancelled_sync_wait_exposes_unreplicated_commit():
    """The trap (PostgreSQL docs, "Synchronous Replication"): a commit waiting for the
    synchronous standby that is CANCELLED returns success with only a WARNING, and the row is
    visible on the primary although the synchronous standby never flushed it. A failover to that
    standby then loses a write the client saw succeed. So Sluice's append path must never cancel
    an append or give it a server-side timeout: it waits for the commit, whatever it takes."""
    bed("wait-healthy", "120", timeout=140)
    new_table("bed_trap")
    observer = connect("cluster_check_observer")
    writer = connect("cluster_check_trap")
    writer_pid = writer.get_backend_pid()
    with observer.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()")
        lsn_before = cur.fetchone()[0]
    frozen = bed("freeze-sync-standby")
    result = {}

    def insert():
        try:
            with writer.cursor() as cur:
                cur.execute("INSERT INTO bed_trap (seq) VALUES (1)")
            result["ok"] = True
        except psycopg2.Error as e:
            result["error"] = e

    try:
        t = threading.Thread(target=insert, daemon=True)
        t.start()
        waiting = False
        deadline = time.time() + 10
        with observer.cursor() as cur:
            while time.time() < deadline and not waiting:
                cur.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (writer_pid,))
                waiting = cur.fetchone()[0] == "SyncRep"
                time.sleep(0.05)
            assert waiting, "the commit did not wait for the frozen synchronous standby"
            time.sleep(0.5)
            assert t.is_alive(), "the commit returned although its synchronous standby is frozen"
            cur.execute("SELECT pg_cancel_backend(%s)", (writer_pid,))
        t.join(timeout=10)
        assert not t.is_alive(), "the cancelled commit did not return"
        assert result.get("ok"), f"the cancelled commit raised {result.get('error')!r}"
        notices = " ".join(writer.notices)
        assert "canceling wait for synchronous replication" in notices, notices
        # A fresh session sees the row although the synchronous standby has not flushed it.
        fresh = connect("cluster_check_reader")
        with fresh.cursor() as cur:
            cur.execute("SELECT count(*) FROM bed_trap WHERE seq = 1")
            assert cur.fetchone()[0] == 1, "the cancelled commit is not visible"
            cur.execute("SELECT flush_lsn <= %s::pg_lsn FROM pg_stat_replication "
                        "WHERE application_name = %s", (lsn_before, frozen))
            row = cur.fetchone()
            assert row and row[0], f"the frozen standby {frozen} reports a flush past the commit"
        fresh.close()
        print(f"  a cancelled wait on {frozen}: success + WARNING, row visible, standby behind",
              flush=True)
    finally:
        bed("thaw")
        observer.close()
        writer.close()
    bed("wait-healthy", "120", timeout=140)


TESTS = [
    test_sync_commit_through_haproxy,
    test_archive_bucket_takes_and_returns_an_object,
    test_cancelled_sync_wait_exposes_unreplicated_commit,
    test_switchover_loses_no_acknowledged_insert,
    test_kill_sync_standby_loses_no_acknowledged_insert,
    test_kill_etcd_member_loses_no_acknowledged_insert,
    test_kill_primary_loses_no_acknowledged_insert,
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="run only the tests whose name contains this")
    args = ap.parse_args()
    selected = [t for t in TESTS if args.k in t.__name__]
    if not selected:
        sys.exit(f"error: no test matches {args.k!r}")
    failed = []
    for test in selected:
        t0 = time.time()
        print(f"---- {test.__name__}", flush=True)
        try:
            test()
            print(f"PASS {test.__name__} ({time.time() - t0:.1f} s)", flush=True)
        except Exception:  # a failed assertion, a bed command that failed, a timeout
            traceback.print_exc()
            print(f"FAIL {test.__name__} ({time.time() - t0:.1f} s)", flush=True)
            failed.append(test.__name__)
    print(f"{len(selected) - len(failed)} passed, {len(failed)} failed", flush=True)
    for name, value in FIGURES:
        print(f"  {name} = {value}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
