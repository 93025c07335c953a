"""Connector throughput and latency, end to end through a live `sluice serve` (needs the
connector runtime, issue 3 part a).

usage (after `source scripts/services.sh && services_start`, with the compat venv):
    SLUICE_ENDPOINT=http://127.0.0.1:PORT python bench/db/bench_connector.py [throughput|latency] [mysql|postgres]

throughput: creates a 4-shard topic (id BIGINT, ts TIMESTAMP, s STRING, ~100 bytes a row), puts
    ROWS records (default 1,000,000) BEFORE creating the connector, then creates SINK_MYSQL /
    SINK_HOLOGRES from the earliest data and times until every row is in the table. The baseline
    to compare with is sinkbench's (same table, same rows, same run of the services).
latency: puts 1,000 records/s for DURATION seconds (default 30) into a 4-shard topic whose
    connector writes into MariaDB; each row carries its put time (µs) in `sent`; the table adds
    `arrived` = SYSDATE(6) at insert. Reports p50/p99 of arrived - sent.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

from datahub import DataHub
from datahub.models import (AuthMode, ConnectorType, DatabaseConnectorConfig, FieldType, HologresConnectorConfig,
                            RecordSchema, TupleRecord)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "compat"))
from test_connector_db import MySQL, Postgres  # noqa: E402  (reuses the CLI helpers)

ACCESS_ID = os.environ.get("SLUICE_ACCESS_ID", "sluiceCompatId")
ACCESS_KEY = os.environ.get("SLUICE_ACCESS_KEY", "sluiceCompatKey0123456789")
SHARDS = 4
TEXT = "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"


def server_cpu_secs():
    """CPU seconds (user + system) the server process has used, if SLUICE_PID names it."""
    pid = os.environ.get("SLUICE_PID")
    if not pid:
        return None
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_perf():
    """With PERF_DATA=<file> (and SLUICE_PID): `perf record -g` of the server during the timed
    part only, to see where the connector's time goes."""
    out, pid = os.environ.get("PERF_DATA"), os.environ.get("SLUICE_PID")
    if not out or not pid:
        return None
    proc = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", pid, "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let perf attach before the clock starts
    return proc


def stop_perf(proc):
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


class Session:
    """One database client process kept open for the polling of a timed run.

    Starting `psql` or `mariadb` for every poll costs ~45 ms of CPU on this box (fork, exec and,
    for PostgreSQL, a new backend process): polling every 50 ms that way took about a quarter of
    the two cores away from the connector being timed, a cost sinkbench's rounds never pay. A
    query on an open session costs ~1 ms.
    """

    def __init__(self, db):
        if db.kind == "mysql":
            argv = ["mariadb", "--no-defaults", "-h", db.host, "-P", db.port, "-u", db.user, "-p" + db.password,
                    "-N", "-B", "-r", "--unbuffered", db.database]
            env = os.environ
        else:
            argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", db.host, "-p", db.port,
                    "-U", db.user, "-d", db.database]
            env = dict(os.environ, PGPASSWORD=db.password)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     bufsize=1)

    def scalar(self, sql):
        """The first column of a query that returns exactly one row."""
        self.proc.stdin.write(sql.rstrip(";") + ";\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the database client exited (exit status %s)" % self.proc.wait())
        return line.rstrip("\n").split("\t")[0]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def client():
    return DataHub(ACCESS_ID, ACCESS_KEY, os.environ["SLUICE_ENDPOINT"], user_agent="sluice-bench")


def topic(dh, names, types):
    project = "bench_%s" % uuid.uuid4().hex[:12]
    name = "t_%s" % uuid.uuid4().hex[:12]
    dh.create_project(project, "bench")
    dh.create_tuple_topic(project, name, SHARDS, 1, RecordSchema.from_lists(names, types), "bench")
    dh.wait_shards_ready(project, name, 10)
    return project, name


def throughput(kind, rows):
    dh = client()
    db = MySQL() if kind == "mysql" else Postgres()
    names, types = ["id", "ts", "s"], [FieldType.BIGINT, FieldType.TIMESTAMP, FieldType.STRING]
    project, name = topic(dh, names, types)
    schema = dh.get_topic(project, name).record_schema
    t0 = time.time()
    for start in range(0, rows, 4000):
        for shard in range(SHARDS):
            recs = []
            for i in range(start + shard, min(start + 4000, rows), SHARDS):
                r = TupleRecord(schema=schema, values=[i, 1_700_000_000_000_000 + i, "row-%012d-%s" % (i, TEXT)])
                r.shard_id = str(shard)
                recs.append(r)
            dh.put_records(project, name, recs)
    print("loaded %d records in %.1f s (not timed)" % (rows, time.time() - t0))
    db.run("DROP TABLE IF EXISTS bench_conn")
    ts_type = "DATETIME(6)" if kind == "mysql" else "timestamp(6)"
    db.run("CREATE TABLE bench_conn (id BIGINT PRIMARY KEY, ts %s NOT NULL, s VARCHAR(100) NOT NULL)" % ts_type)
    if kind == "mysql":
        cfg = DatabaseConnectorConfig(db.host, db.port, db.database, db.user, db.password, "bench_conn", False)
        ctype = ConnectorType.SINK_MYSQL
    else:
        cfg = HologresConnectorConfig(db.database, "bench_conn", "%s:%s" % (db.host, db.port), "local", AuthMode.AK,
                                      "MICROSECOND", db.user, db.password)
        ctype = ConnectorType.SINK_HOLOGRES
    # Each shard's rows arrive in order (a task writes a batch only after the previous one is
    # committed), so the run is done when the last id of every shard is in the table. Polling with
    # primary-key lookups keeps the watcher off the database's CPU; a COUNT(*) every 200 ms scans
    # the whole table each time and slowed MariaDB's inserts measurably; the lookups go through one
    # open client session (see `Session`).
    last_ids = ",".join(str(i) for i in range(max(0, rows - SHARDS), rows))
    # let the database finish the previous round's DROP (InnoDB purge, checkpoints) and the server
    # its fsyncs before the clock starts
    time.sleep(float(os.environ.get("SETTLE_SECS", "3")))
    watcher = Session(db)
    perf = start_perf()
    cpu0 = server_cpu_secs()
    started = time.time()
    dh.create_connector(project, name, ctype, names, cfg, -1)
    while int(watcher.scalar("SELECT COUNT(*) FROM bench_conn WHERE id IN (%s)" % last_ids)) < min(rows, SHARDS):
        time.sleep(0.05)
    secs = time.time() - started
    cpu = server_cpu_secs()
    stop_perf(perf)
    watcher.close()
    count = int(db.run("SELECT COUNT(*) FROM bench_conn")[0][0])
    assert count == rows, "expected %d rows, found %d" % (rows, count)
    print("%s connector: %d rows in %.2f s = %.0f rows/s%s" % (
        kind, rows, secs, rows / secs, "" if cpu is None else "; server CPU %.2f s" % (cpu - cpu0)))


def latency(duration, rate=1000):
    dh = client()
    db = MySQL()
    names, types = ["id", "sent", "s"], [FieldType.BIGINT, FieldType.BIGINT, FieldType.STRING]
    project, name = topic(dh, names, types)
    schema = dh.get_topic(project, name).record_schema
    db.run("DROP TABLE IF EXISTS bench_lat")
    db.run("CREATE TABLE bench_lat (id BIGINT PRIMARY KEY, sent BIGINT NOT NULL, s VARCHAR(100), "
           "arrived BIGINT NOT NULL DEFAULT (CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)))")
    cfg = DatabaseConnectorConfig(db.host, db.port, db.database, db.user, db.password, "bench_lat", False)
    dh.create_connector(project, name, ConnectorType.SINK_MYSQL, names, cfg, -1)
    total = duration * rate
    per_tick = rate // 100  # 10 ms ticks, one put per shard in turn
    start = time.time()
    for tick in range(total // per_tick):
        due = start + tick / 100.0
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        sent = int(time.time() * 1_000_000)
        recs = []
        for k in range(per_tick):
            i = tick * per_tick + k
            r = TupleRecord(schema=schema, values=[i, sent, TEXT])
            r.shard_id = str(tick % SHARDS)
            recs.append(r)
        dh.put_records(project, name, recs)
    while int(db.run("SELECT COUNT(*) FROM bench_lat")[0][0]) < total:
        time.sleep(0.2)
    lat = sorted(int(r[0]) for r in db.run("SELECT arrived - sent FROM bench_lat"))
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0  # noqa: E731
    print("latency put -> row in MariaDB at %d rec/s over %d s: p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (rate, duration, p(0.50), p(0.99), lat[-1] / 1000.0))


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "throughput"
    if mode == "throughput":
        throughput(sys.argv[2] if len(sys.argv) > 2 else "mysql", int(os.environ.get("ROWS", "1000000")))
    else:
        latency(int(os.environ.get("DURATION", "30")))
