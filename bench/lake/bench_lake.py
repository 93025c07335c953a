"""SINK_ODPS end to end through a live `sluice serve` (bench/lake/run.sh starts it).

usage (with the compat venv; SLUICE_ENDPOINT and SLUICE_PID set, and for s3 the variables of
scripts/services.sh's s3s-fs):
    python bench/lake/bench_lake.py throughput file|s3 ROWS
    python bench/lake/bench_lake.py timeliness SECONDS WAREHOUSE_DIR MINUTE_MS

throughput: a 4-shard topic with the rows of lakebench (id BIGINT, event_time TIMESTAMP, region,
    note STRING, price DECIMAL, score DOUBLE), ROWS records put BEFORE the connector exists (not
    timed); then a SINK_ODPS connector (SYSTEM_TIME, ds/hh/mm; run.sh gives the server
    `connector_batch.sink_odps.records = LIVE_BATCH`, else a run smaller than the default batch
    of 1,000,000 records would wait for the 60 s age limit) is created and timed until every shard's checkpoint (CurrentSequence) (the last record delivered) reaches the last record, i.e.
    every row is in a visible file. DuckDB then counts the rows in the lake. Reports rows/s and
    the server's CPU seconds per million rows (over the timed part only).
timeliness: puts 1,000 records/s (100 every 0.1 s over 4 shards) for SECONDS into a SINK_ODPS
    connector with default batch settings (file age limit 60 s); the server runs with
    connector_odps_minute_ms = MINUTE_MS so a 15-minute TimeRange lasts 15 * MINUTE_MS ms.
    Polls get_connector_done_time every 0.5 s (lag = wall clock - done time) and the partition
    folders every 0.2 s (the `_SUCCESS` delay: when the marker appeared - the partition's end).
"""

import datetime
import glob
import os
import sys
import threading
import time
import uuid
from decimal import Decimal

import duckdb
from datahub import DataHub
from datahub.models import ConnectorType, FieldType, OdpsConnectorConfig, PartitionMode, RecordSchema, TupleRecord

ACCESS_ID = os.environ.get("SLUICE_ACCESS_ID", "sluiceCompatId")
ACCESS_KEY = os.environ.get("SLUICE_ACCESS_KEY", "sluiceCompatKey0123456789")
SHARDS = 4
FIELDS = [("id", FieldType.BIGINT), ("event_time", FieldType.TIMESTAMP), ("region", FieldType.STRING),
          ("note", FieldType.STRING), ("price", FieldType.DECIMAL), ("score", FieldType.DOUBLE)]
REGIONS = ["east", "west", "north", "south"]


def server_cpu_secs():
    with open("/proc/%s/stat" % os.environ["SLUICE_PID"]) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client():
    return DataHub(ACCESS_ID, ACCESS_KEY, os.environ["SLUICE_ENDPOINT"], user_agent="sluice-bench")


def topic(dh):
    project = "bench_%s" % uuid.uuid4().hex[:12]
    name = "t_%s" % uuid.uuid4().hex[:12]
    dh.create_project(project, "bench")
    schema = RecordSchema.from_lists([n for n, _ in FIELDS], [t for _, t in FIELDS])
    dh.create_tuple_topic(project, name, SHARDS, 1, schema, "bench")
    dh.wait_shards_ready(project, name, 10)
    return project, name, dh.get_topic(project, name).record_schema


def row(schema, shard, seq, event_us):
    r = TupleRecord(schema=schema, values=[shard * 1_000_000_000 + seq, event_us, REGIONS[seq % 4],
                                           "note-%012d-abcdefghijklmnopqrstuvwxyz-0123456789" % seq,
                                           Decimal("%d.%03d" % (seq % 100_000, seq % 1000)), seq / 4.0])
    r.shard_id = str(shard)
    return r


def lake_rows(table):
    if not glob.glob(os.path.join(table, "**", "*.parquet"), recursive=True):
        return 0
    con = duckdb.connect()
    try:
        return con.execute("SELECT count(*) FROM read_parquet('%s/**/*.parquet')" % table).fetchone()[0]
    finally:
        con.close()


def odps_config(warehouse, tunnel="local", ak="", sk="", minute_format="%M"):
    return OdpsConnectorConfig("benchproj", "events", warehouse, tunnel, ak, sk, PartitionMode.SYSTEM_TIME, 15,
                               {"ds": "%Y%m%d", "hh": "%H", "mm": minute_format})


def throughput(kind, rows):
    dh = client()
    project, name, schema = topic(dh)
    per_shard = rows // SHARDS
    t0 = time.time()
    base_us = int(t0 * 1_000_000)
    for start in range(0, per_shard, 2000):
        recs = [row(schema, s, q, base_us + q) for s in range(SHARDS) for q in range(start, min(start + 2000, per_shard))]
        dh.put_records(project, name, recs)
    print("loaded %d records in %.1f s (not timed)" % (per_shard * SHARDS, time.time() - t0))
    if kind == "file":
        wh = "/tmp/sluice-lakebench-%s" % uuid.uuid4().hex[:8]
        cfg = odps_config("file://" + wh)
        table = os.path.join(wh, "benchproj.db", "events")
    else:
        bucket = "lakebench-%s" % uuid.uuid4().hex[:8]
        os.makedirs(os.path.join(os.environ["SLUICE_TEST_S3_DIR"], bucket))
        cfg = odps_config("s3://%s/wh" % bucket, os.environ["SLUICE_TEST_S3_ENDPOINT"],
                          os.environ["SLUICE_TEST_S3_ACCESS_KEY"], os.environ["SLUICE_TEST_S3_SECRET_KEY"])
        table = os.path.join(os.environ["SLUICE_TEST_S3_DIR"], bucket, "wh", "benchproj.db", "events")
    cpu0, t0 = server_cpu_secs(), time.time()
    cid = dh.create_connector(project, name, ConnectorType.SINK_ODPS, [n for n, _ in FIELDS], cfg).connector_id
    while True:
        infos = dh.get_connector_shard_status(project, name, cid).shard_status_infos
        if all(e.current_sequence >= per_shard - 1 for e in infos.values()):
            break
        if time.time() - t0 > 1800:
            raise SystemExit("timed out: %s" % {k: e.current_sequence for k, e in infos.items()})
        time.sleep(0.1)
    secs, cpu = time.time() - t0, server_cpu_secs() - cpu0
    total = per_shard * SHARDS
    got = lake_rows(table)
    assert got == total, "the lake holds %d rows, not %d" % (got, total)
    files = glob.glob(os.path.join(table, "**", "*.parquet"), recursive=True)
    size = sum(os.path.getsize(f) for f in files)
    print("connector %s: %d rows in %.2f s = %.0f rows/s; server cpu %.2f s = %.2f s per million rows; "
          "%d files, %d bytes" % (kind, total, secs, total / secs, cpu, cpu * 1e6 / total, len(files), size))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def timeliness(seconds, warehouse, minute_ms):
    window_ms = 15 * minute_ms
    dh = client()
    project, name, schema = topic(dh)
    cfg = odps_config("file://" + warehouse, minute_format="%M%S")
    cid = dh.create_connector(project, name, ConnectorType.SINK_ODPS, [n for n, _ in FIELDS], cfg).connector_id
    table = os.path.join(warehouse, "benchproj.db", "events")
    stop = threading.Event()
    lags, marks = [], {}

    def poll():
        dh2 = client()
        next_done = 0.0
        while not stop.is_set():
            now = time.time()
            if now >= next_done:
                done = dh2.get_connector_done_time(project, name, cid).done_time
                lags.append((now, now * 1000 - done))
                next_done = now + 0.5
            for d in glob.glob(os.path.join(table, "ds=*", "hh=*", "mm=*")):
                if d not in marks and os.path.exists(os.path.join(d, "_SUCCESS")):
                    marks[d] = time.time()
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    cpu0, t0 = server_cpu_secs(), time.time()
    seq = [0] * SHARDS
    tick = 0
    while time.time() - t0 < seconds:
        recs = []
        for _ in range(100 // SHARDS):
            for s in range(SHARDS):
                recs.append(row(schema, s, seq[s], int(time.time() * 1_000_000)))
                seq[s] += 1
        dh.put_records(project, name, recs)
        tick += 1
        delay = t0 + tick * 0.1 - time.time()
        if delay > 0:
            time.sleep(delay)
    put_end = time.time()
    sent = sum(seq)
    cpu = server_cpu_secs() - cpu0
    # let the last full window complete and get its marker
    time.sleep(window_ms / 1000 + 80)
    stop.set()
    poller.join()
    print("timeliness: %d records in %.1f s (%.0f/s); server cpu %.2f s = %.2f s per million rows (puts + connector)"
          % (sent, put_end - t0, sent / (put_end - t0), cpu, cpu * 1e6 / sent))
    steady = [lag / 1000 for (t, lag) in lags if t0 + 5 <= t <= put_end]
    print("done-time lag behind the wall clock while putting: p50 %.1f s, p99 %.1f s, max %.1f s (%d samples)"
          % (pct(steady, 50), pct(steady, 99), max(steady), len(steady)))
    delays = []
    for d, seen in sorted(marks.items()):
        parts = dict(p.split("=", 1) for p in os.path.relpath(d, table).split("/"))
        start = datetime.datetime.strptime(parts["ds"] + parts["hh"] + parts["mm"], "%Y%m%d%H%M%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        end = start + window_ms / 1000
        if t0 < start and end <= put_end:  # a whole window of the steady stream
            delays.append(seen - end)
    print("_SUCCESS delay after the partition's end (whole windows of %.0f s): %s"
          % (window_ms / 1000, ", ".join("%.1f s" % x for x in delays) or "none"))
    got = lake_rows(table)
    assert got == sent, "the lake holds %d rows, not %d" % (got, sent)


if __name__ == "__main__":
    if sys.argv[1] == "throughput":
        throughput(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "timeliness":
        timeliness(float(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
