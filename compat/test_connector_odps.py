"""SINK_ODPS as a Hive-partitioned Parquet lake in a file:// warehouse (issue 10 item 1), read
back with DuckDB exactly as a user would: `read_parquet(..., hive_partitioning=true,
union_by_name=true)`; and in an s3:// warehouse on s3s-fs (scripts/services.sh keeps each object
as a file at SLUICE_TEST_S3_DIR/<bucket>/<key>, so DuckDB reads the same table there).

The server runs with `connector_odps_minute_ms = MINUTE_MS`, so a 15-minute TimeRange window
lasts 15 * MINUTE_MS ms and a test sees several windows in seconds; the partition formats include
seconds (`mm=%M%S`) so that short windows get distinct names.
"""

import collections
import datetime
import glob
import json
import os
import time
from decimal import Decimal

import duckdb
import pytest
from datahub.models import (ConnectorType, FieldType, OdpsConnectorConfig, PartitionMode, RecordSchema,
                            TupleRecord)

from util import put, read_all, unique_name, wait_for

MINUTE_MS = 100
WINDOW_MS = 15 * MINUTE_MS
SERVER_CONFIG = {
    "connector_odps_minute_ms": MINUTE_MS,
    "connector_batch.sink_odps.records": 25,
    "connector_batch.sink_odps.age_ms": 200,
}
SHARDS = 4
FIELDS = [("id", FieldType.BIGINT), ("event_time", FieldType.TIMESTAMP), ("region", FieldType.STRING),
          ("note", FieldType.STRING), ("price", FieldType.DECIMAL), ("score", FieldType.DOUBLE)]
TIME_FORMATS = collections.OrderedDict([("ds", "%Y%m%d"), ("hh", "%H"), ("mm", "%M%S")])


def window_values(ms):
    start = ms - ms % WINDOW_MS
    t = datetime.datetime.fromtimestamp(start / 1000, tz=datetime.timezone.utc)
    return {k: t.strftime(f) for k, f in TIME_FORMATS.items()}


class Lake:
    def __init__(self, sluice_factory, tmp_path, mode, partition_config=TIME_FORMATS, config=None):
        self.srv = sluice_factory("lake", config=dict(SERVER_CONFIG, **(config or {})))
        self.dh = self.srv.client()
        self.project = unique_name("lk")
        self.dh.create_project(self.project, "lake")
        self.topic = unique_name("src")
        self.schema = RecordSchema.from_lists([n for n, _ in FIELDS], [t for _, t in FIELDS])
        self.dh.create_tuple_topic(self.project, self.topic, SHARDS, 1, self.schema, "lake source")
        self.dh.wait_shards_ready(self.project, self.topic, 10)
        self.warehouse = str(tmp_path / "warehouse")
        self.table = os.path.join(self.warehouse, "lakeproj.db", "events")
        self.mode = mode
        self.partition_config = partition_config
        self.cid = None
        self.tunnel, self.ak, self.sk = "local", "", ""

    def config(self, endpoint=None):
        return OdpsConnectorConfig("lakeproj", "events", endpoint or "file://" + self.warehouse, self.tunnel,
                                   self.ak, self.sk, self.mode, 15, self.partition_config)

    def use_s3(self):
        """Points the lake at a fresh bucket of s3s-fs; returns the s3:// endpoint."""
        root = os.environ.get("SLUICE_TEST_S3_DIR")
        if not root:
            pytest.fail("SLUICE_TEST_S3_DIR is not set: run through scripts/test.sh", pytrace=False)
        bucket = unique_name("lk-s3").replace("_", "-").lower()
        os.makedirs(os.path.join(root, bucket))  # s3s-fs: a bucket is a directory
        self.tunnel = os.environ["SLUICE_TEST_S3_ENDPOINT"]
        self.ak, self.sk = os.environ["SLUICE_TEST_S3_ACCESS_KEY"], os.environ["SLUICE_TEST_S3_SECRET_KEY"]
        self.table = os.path.join(root, bucket, "wh", "lakeproj.db", "events")
        return "s3://%s/wh" % bucket

    def connect(self, columns=None, endpoint=None):
        self.cid = self.dh.create_connector(self.project, self.topic, ConnectorType.SINK_ODPS,
                                            columns or [n for n, _ in FIELDS], self.config(endpoint)).connector_id

    def put(self, shard, ids, extra=None):
        schema = self.dh.get_topic(self.project, self.topic).record_schema if extra else self.schema
        base_us = 1_795_543_200_000_000  # 2026-11-24 18:00 UTC
        recs = []
        for i in ids:
            values = [i, base_us + i * 700_000, "east" if i % 2 == 0 else "west/x", "n%d" % i,
                      Decimal("%d.125" % i), i / 4.0] + ([extra(i)] if extra else [])
            recs.append(TupleRecord(schema=schema, values=values))
        put(self.dh, "json", self.project, self.topic, recs, shard_id=str(shard))

    def system_times(self):
        out = {}
        for s in range(SHARDS):
            for rec in read_all(self.dh, self.project, self.topic, str(s), schema=self.schema):
                out[rec.values[0]] = rec.system_time
        return out

    def query(self, select, tail=""):
        files = glob.glob(os.path.join(self.table, "**", "*.parquet"), recursive=True)
        if not files:
            return []
        con = duckdb.connect()
        try:
            return con.execute(
                "SELECT %s FROM read_parquet('%s/**/*.parquet', hive_partitioning=true, union_by_name=true, "
                "hive_types_autocast=false) %s" % (select, self.table, tail)).fetchall()
        finally:
            con.close()

    def count(self):
        return self.query("count(*)")[0][0] if self.query("count(*)") else 0

    def wait_count(self, n):
        wait_for(lambda: self.count() == n or self.count(), "%d rows in the lake" % n)


@pytest.mark.parametrize("mode", [PartitionMode.SYSTEM_TIME, PartitionMode.EVENT_TIME, PartitionMode.USER_DEFINE],
                         ids=["system", "event", "user"])
def test_duckdb_finds_every_row_once_in_its_partition(sluice_factory, tmp_path, mode):
    user = mode == PartitionMode.USER_DEFINE
    lake = Lake(sluice_factory, tmp_path, mode,
                collections.OrderedDict([("region", "")]) if user else TIME_FORMATS)
    lake.connect()
    want = []
    for rnd in range(4):  # rounds ~1.5 windows apart: several system-time windows
        for s in range(SHARDS):
            ids = list(range(s * 10_000 + rnd * 10, s * 10_000 + rnd * 10 + 10))
            lake.put(s, ids)
            want += ids
        time.sleep(WINDOW_MS * 1.2 / 1000)
    lake.wait_count(len(want))
    time.sleep(0.5)
    parts = "region" if user else "ds, hh, mm"
    rows = lake.query("id, epoch_us(event_time), region, note, CAST(price AS VARCHAR), score, " + parts)
    ids = [r[0] for r in rows]
    assert sorted(ids) == sorted(want), "every row once"
    system = lake.system_times()
    seen_partitions = set()
    for r in rows:
        i = r[0]
        assert r[1] == 1_795_543_200_000_000 + i * 700_000
        assert r[2] == ("east" if i % 2 == 0 else "west/x")
        assert r[3] == "n%d" % i
        assert Decimal(r[4]) == Decimal("%d.125" % i)
        assert r[5] == i / 4.0
        if user:
            got = {"region": r[6]}
            expect = {"region": r[2]}
        else:
            got = dict(zip(TIME_FORMATS, r[6:9]))
            ms = system[i] if mode == PartitionMode.SYSTEM_TIME else r[1] // 1000
            expect = window_values(ms)
        assert got == expect, "id %d in the wrong partition" % i
        seen_partitions.add(tuple(sorted(got.items())))
    assert len(seen_partitions) >= (2 if user else 3), seen_partitions
    # the Parquet types are the documented ones
    con = duckdb.connect()
    f = glob.glob(os.path.join(lake.table, "**", "*.parquet"), recursive=True)[0]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('%s'))"
                             % f).fetchall())
    con.close()
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE", types
    assert types["price"] == "DECIMAL(38,18)", types
    assert types["id"] == "BIGINT" and types["score"] == "DOUBLE", types


def test_sigkill_mid_write_then_restart_leaves_no_gap_and_no_duplicate(sluice_factory, tmp_path):
    # small files (10 rows) so that the stream lasts long enough to be cut
    lake = Lake(sluice_factory, tmp_path, PartitionMode.SYSTEM_TIME,
                config={"connector_batch.sink_odps.records": 10})
    want = []
    per_shard = 1500
    for s in range(SHARDS):
        ids = list(range(s * 10_000, s * 10_000 + per_shard))
        lake.put(s, ids)
        want += ids
    lake.connect()
    wait_for(lambda: lake.count() > 0 or "nothing yet", "the first files", interval=0.02)
    lake.srv.kill()
    at_kill = lake.count()
    assert 0 < at_kill < len(want), "the kill did not land mid-stream (%d of %d)" % (at_kill, len(want))
    lake.srv.start()
    lake.dh = lake.srv.client()
    for s in range(SHARDS):
        ids = list(range(s * 10_000 + per_shard, s * 10_000 + per_shard + 20))
        lake.put(s, ids)
        want += ids
    lake.wait_count(len(want))
    time.sleep(1.0)
    ids = [r[0] for r in lake.query("id")]
    assert len(ids) == len(set(ids)), "duplicates after the restart"
    assert sorted(ids) == sorted(want), "rows lost"
    print("rows at the kill: %d of %d" % (at_kill, len(want)))


def test_append_connector_field_reaches_new_files(sluice_factory, tmp_path):
    lake = Lake(sluice_factory, tmp_path, PartitionMode.SYSTEM_TIME)
    lake.connect()
    lake.put(0, range(10))
    lake.wait_count(10)
    lake.dh.append_field(lake.project, lake.topic, "extra", FieldType.STRING)
    lake.dh.append_connector_field(lake.project, lake.topic, lake.cid, "extra")
    lake.put(0, range(10, 20), extra=lambda i: "e%d" % i)
    lake.wait_count(20)
    rows = dict(lake.query("id, extra"))
    assert [rows[i] for i in range(10)] == [None] * 10
    assert [rows[i] for i in range(10, 20)] == ["e%d" % i for i in range(10, 20)]


@pytest.mark.parametrize("endpoint,needle", [
    ("http://service.cn-hangzhou.maxcompute.aliyun.com/api", "MaxCompute tunnel is not available self-hosted"),
    ("odps.example", "neither a file:///path nor an s3://bucket/prefix"),
], ids=["maxcompute", "not-a-warehouse"])
def test_endpoints_that_are_no_warehouse_are_stored_and_hang_saying_why(sluice_factory, tmp_path, endpoint, needle):
    lake = Lake(sluice_factory, tmp_path, PartitionMode.SYSTEM_TIME)
    lake.connect(endpoint=endpoint)
    assert lake.dh.get_connector(lake.project, lake.topic, lake.cid).config.odps_endpoint == endpoint
    seen = {}

    def hanging():
        infos = lake.dh.get_connector_shard_status(lake.project, lake.topic, lake.cid).shard_status_infos
        seen.update({k: v.last_error_message for k, v in infos.items() if v.state.value == "CONTEXT_HANG"})
        return len(seen) == SHARDS or {k: v.state.value for k, v in infos.items()}

    wait_for(hanging, "every shard in CONTEXT_HANG")
    assert all(needle in m for m in seen.values()), seen


def partitions_of(lake):
    """{partition path: has _SUCCESS} of every leaf partition folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(lake.table):
        if not dirnames and dirpath != lake.table:
            out[os.path.relpath(dirpath, lake.table)] = "_SUCCESS" in filenames
    return out


def rows_per_partition(lake):
    return {"ds=%s/hh=%s/mm=%s" % (r[0], r[1], r[2]): r[3]
            for r in lake.query("ds, hh, mm, count(*)", "GROUP BY ALL") or []}


def test_success_marks_exactly_the_complete_system_time_partitions(sluice_factory, tmp_path):
    lake = Lake(sluice_factory, tmp_path, PartitionMode.SYSTEM_TIME)
    lake.connect()
    want = []
    checked = {}  # partition -> rows seen there when its marker was first seen
    deadline = time.monotonic() + 6 * WINDOW_MS / 1000
    n = 0
    while time.monotonic() < deadline:
        for s in range(SHARDS):
            lake.put(s, [s * 100_000 + n])
            want.append(s * 100_000 + n)
        n += 1
        # markers first, then rows: a marker seen means its rows were visible before it
        marks = partitions_of(lake)
        counts = rows_per_partition(lake)
        for p, marked in marks.items():
            if marked and p not in checked:
                checked[p] = counts.get(p, 0)
        time.sleep(0.05)
    lake.wait_count(len(want))
    # every window has ended a moment later and the connector is idle: all partitions complete
    wait_for(lambda: all(partitions_of(lake).values()) or partitions_of(lake), "every partition marked")
    system = lake.system_times()
    expected = collections.Counter("ds=%(ds)s/hh=%(hh)s/mm=%(mm)s" % window_values(system[i]) for i in want)
    assert set(partitions_of(lake)) == set(expected)
    assert len(expected) >= 4, expected
    # a marker never came before its partition's last row
    assert checked, "no marker appeared while rows were streaming"
    for p, seen in checked.items():
        assert seen == expected[p], "%s was marked with %d of its %d rows" % (p, seen, expected[p])
    print("markers seen mid-stream: %d of %d partitions" % (len(checked), len(expected)))


def test_event_time_markers_wait_for_the_allowance_and_late_rows_land(sluice_factory, tmp_path):
    lake = Lake(sluice_factory, tmp_path, PartitionMode.EVENT_TIME)
    lake.connect()
    now_us = int(time.time() * 1_000_000)
    # rows whose event time lies one window back
    ev = now_us - WINDOW_MS * 1000
    schema = lake.schema
    recs = [TupleRecord(schema=schema, values=[i, ev, "east", "n%d" % i, Decimal(1), 0.0]) for i in range(5)]
    put(lake.dh, "json", lake.project, lake.topic, recs, shard_id="0")
    lake.wait_count(5)
    (part,) = partitions_of(lake)
    # complete when the done time passes the window's end plus one window of allowance
    wait_for(lambda: partitions_of(lake)[part] or "not yet", "_SUCCESS in %s" % part)
    marked_at = time.time() * 1000
    window_end = (ev // 1000) - (ev // 1000) % WINDOW_MS + WINDOW_MS
    assert marked_at >= window_end + WINDOW_MS, "marked before the lateness allowance passed"
    # a late row still lands, in a new file of the marked partition
    late = [TupleRecord(schema=schema, values=[99, ev, "east", "late", Decimal(1), 0.0])]
    put(lake.dh, "json", lake.project, lake.topic, late, shard_id="1")
    lake.wait_count(6)
    files = glob.glob(os.path.join(lake.table, part, "*.parquet"))
    assert len(files) == 2 and any(f.split("/")[-1].startswith("shard-1_") for f in files), files
    wait_for(lambda: late_counts(lake).get("1") == 1 or late_counts(lake), "LateCount 1 on shard 1")


def late_counts(lake):
    """Each shard's LateCount, from the raw GetConnectorShardStatus answer (pydatahub's
    ShardStatusEntry ignores the key)."""
    from datahub.models.params import GetConnectorShardStatusParams
    from datahub.rest import Path
    rest = lake.dh._datahub_impl._rest_client
    content, _ = rest.post(Path.CONNECTOR % (lake.project, lake.topic, lake.cid),
                           data=GetConnectorShardStatusParams("").content())
    infos = json.loads(content)["ShardStatusInfos"]
    return {shard: e["LateCount"] for shard, e in infos.items()}


def test_lateness_allowance_setting_and_late_rows_counted_durably(sluice_factory, tmp_path):
    allowance_ms = 4 * WINDOW_MS  # the default is one window
    lake = Lake(sluice_factory, tmp_path, PartitionMode.EVENT_TIME,
                config={"connector_odps_lateness_ms": allowance_ms})
    lake.connect()
    schema = lake.schema
    ev = int(time.time() * 1_000_000) - WINDOW_MS * 1000  # one window back
    window_end = (ev // 1000) - (ev // 1000) % WINDOW_MS + WINDOW_MS
    recs = [TupleRecord(schema=schema, values=[i, ev, "east", "n%d" % i, Decimal(1), 0.0]) for i in range(5)]
    put(lake.dh, "json", lake.project, lake.topic, recs, shard_id="0")
    lake.wait_count(5)
    (part,) = partitions_of(lake)
    wait_for(lambda: partitions_of(lake)[part] or "not yet", "_SUCCESS in %s" % part, interval=0.02)
    marked_at = time.time() * 1000
    assert marked_at >= window_end + allowance_ms, "marked %d ms before the allowance passed" % (
        window_end + allowance_ms - marked_at)
    assert marked_at <= window_end + allowance_ms + 3000, "marked %d ms after the allowance" % (
        marked_at - window_end - allowance_ms)
    # late rows: 3 on shard 1 (two puts), 2 on shard 2; an on-time row on shard 3 is not late
    late = lambda ids: [TupleRecord(schema=schema, values=[i, ev, "east", "late", Decimal(1), 0.0]) for i in ids]
    put(lake.dh, "json", lake.project, lake.topic, late([100, 101]), shard_id="1")
    put(lake.dh, "json", lake.project, lake.topic, late([102]), shard_id="1")
    put(lake.dh, "json", lake.project, lake.topic, late([200, 201]), shard_id="2")
    now = int(time.time() * 1_000_000)
    put(lake.dh, "json", lake.project, lake.topic,
        [TupleRecord(schema=schema, values=[300, now, "east", "on time", Decimal(1), 0.0])], shard_id="3")
    lake.wait_count(11)
    want = {"0": 0, "1": 3, "2": 2, "3": 0}
    wait_for(lambda: late_counts(lake) == want or late_counts(lake), "LateCount per shard")
    # pydatahub parses the status with the extra key
    infos = lake.dh.get_connector_shard_status(lake.project, lake.topic, lake.cid).shard_status_infos
    assert set(infos) == set(want)
    # durable: the count survives a restart
    lake.srv.restart()
    lake.dh = lake.srv.client()
    assert late_counts(lake) == want
    assert lake.count() == 11


def test_late_count_is_recovered_from_late_file_names_after_sigkill(sluice_factory, tmp_path):
    """A late file made visible whose checkpoint a SIGKILL lost: the rows are not written again
    and still counted once (from the `_late` file name)."""
    lake = Lake(sluice_factory, tmp_path, PartitionMode.EVENT_TIME,
                config={"connector_batch.sink_odps.records": 10, "connector_odps_lateness_ms": 0})
    lake.connect()
    schema = lake.schema
    ev = int(time.time() * 1_000_000) - 2 * WINDOW_MS * 1000
    put(lake.dh, "json", lake.project, lake.topic,
        [TupleRecord(schema=schema, values=[0, ev, "east", "n", Decimal(1), 0.0])], shard_id="0")
    lake.wait_count(1)
    (part,) = partitions_of(lake)
    wait_for(lambda: partitions_of(lake)[part] or "not yet", "_SUCCESS in %s" % part)
    # late rows on shard 1 in files of 10, cut by a SIGKILL: a late file can be visible while
    # its checkpoint is lost, and is then counted from its name when recovery skips its rows
    n = 400
    put_later = [TupleRecord(schema=schema, values=[1000 + i, ev, "east", "late", Decimal(1), 0.0])
                 for i in range(n)]
    for k in range(0, n, 100):
        put(lake.dh, "json", lake.project, lake.topic, put_later[k:k + 100], shard_id="1")
    wait_for(lambda: lake.count() > 1 or "nothing yet", "the first late files", interval=0.01)
    lake.srv.kill()
    at_kill = lake.count() - 1
    lake.srv.start()
    lake.dh = lake.srv.client()
    lake.wait_count(1 + n)
    time.sleep(0.5)
    ids = [r[0] for r in lake.query("id")]
    assert len(ids) == len(set(ids)), "duplicates after the restart"
    late_files = [f for f in glob.glob(os.path.join(lake.table, part, "*.parquet")) if f.endswith("_late.parquet")]
    assert late_files, "late files are named *_late.parquet"
    wait_for(lambda: late_counts(lake).get("1") == n or late_counts(lake), "LateCount %d on shard 1" % n)
    print("late rows visible at the kill: %d of %d" % (at_kill, n))


def test_s3_warehouse_rows_once_in_their_partitions_and_markers_are_objects(sluice_factory, tmp_path):
    lake = Lake(sluice_factory, tmp_path, PartitionMode.SYSTEM_TIME)
    endpoint = lake.use_s3()
    lake.connect(endpoint=endpoint)
    want = []
    for rnd in range(3):
        for s in range(SHARDS):
            ids = list(range(s * 10_000 + rnd * 10, s * 10_000 + rnd * 10 + 10))
            lake.put(s, ids)
            want += ids
        time.sleep(WINDOW_MS * 1.2 / 1000)
    lake.wait_count(len(want))
    time.sleep(0.5)
    rows = lake.query("id, note, ds, hh, mm")
    assert sorted(r[0] for r in rows) == sorted(want), "every row once"
    system = lake.system_times()
    for r in rows:
        assert r[1] == "n%d" % r[0]
        assert dict(zip(TIME_FORMATS, r[2:5])) == window_values(system[r[0]]), "id %d in the wrong partition" % r[0]
    # the windows the done time has passed get a _SUCCESS object
    wait_for(lambda: any(partitions_of(lake).values()) or partitions_of(lake), "a _SUCCESS object")
    assert not glob.glob(os.path.join(lake.table, "**", ".*.tmp"), recursive=True)


def test_a_file_closes_on_its_age_not_each_time_the_shard_catches_up(sluice_factory, tmp_path):
    """At a trickle (a put every 0.1 s) a shard is caught up between puts; a lake file still
    waits for its age limit (here 3 s) instead of closing after each put."""
    lake = Lake(sluice_factory, tmp_path, PartitionMode.USER_DEFINE, collections.OrderedDict([("region", "")]),
                config={"connector_batch.sink_odps.age_ms": 3000, "connector_batch.sink_odps.records": 1000})
    lake.connect()
    ids = list(range(0, 20, 2))  # even ids: one partition, region=east
    for i in ids:
        lake.put(0, [i])
        time.sleep(0.1)
    lake.wait_count(len(ids))
    files = glob.glob(os.path.join(lake.table, "**", "*.parquet"), recursive=True)
    assert len(files) == 1, "one file per age limit, not one per put: %s" % files
