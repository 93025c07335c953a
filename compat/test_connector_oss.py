"""SINK_OSS end to end: pydatahub creates the connector as the tutorial does (OssConnectorConfig,
connector-tutorial OSS section) on a live `sluice serve`, and rows arrive as CSV objects in the
s3s-fs that scripts/services.sh started (SLUICE_TEST_S3_*; missing variables fail the tests).
s3s-fs keeps each object as a file at SLUICE_TEST_S3_DIR/<bucket>/<key>, so the objects are read
back from the file system.
"""

import calendar
import csv
import io
import os
import time
from decimal import Decimal

from datahub.models import AuthMode, ConnectorType, FieldType, OssConnectorConfig, RecordSchema, TupleRecord

from sink_adapters import env
from util import put, unique_name, wait_for

# small batches for the test (SINK_OSS's own default is 5 minutes / 64 MiB)
CONFIG = {"connector_batch.sink_oss.records": 50, "connector_batch.sink_oss.age_ms": 100}
NAMES = ["id", "name", "ok", "score", "at", "amount"]
TYPES = [FieldType.BIGINT, FieldType.STRING, FieldType.BOOLEAN, FieldType.DOUBLE, FieldType.TIMESTAMP,
         FieldType.DECIMAL]


def new_bucket():
    bucket = unique_name("oss").replace("_", "-").lower()
    os.makedirs(os.path.join(env("SLUICE_TEST_S3_DIR"), bucket))  # s3s-fs: a bucket is a directory
    return bucket


def objects(bucket):
    """{key: text} of the bucket's complete CSV objects."""
    base = os.path.join(env("SLUICE_TEST_S3_DIR"), bucket)
    out = {}
    for d, _, files in os.walk(base):
        for f in files:
            if f.endswith(".csv"):
                with open(os.path.join(d, f), newline="") as fh:
                    out[os.path.relpath(os.path.join(d, f), base)] = fh.read()
    return out


def rows(bucket):
    return [r for text in objects(bucket).values() for r in csv.reader(io.StringIO(text, newline=""))]


def row_for(i):
    return [i, 'name %d, "quoted" ünï ✓' % i if i % 3 else "", i % 2 == 0, i * 0.25,
            1_700_000_000_000_000 + i, Decimal("%d.50" % i)]


def csv_for(i):
    v = row_for(i)
    score = repr(v[3])  # the shortest round-trip text; a whole number without ".0"
    return [str(i), v[1], "true" if v[2] else "false", score[:-2] if score.endswith(".0") else score, str(v[4]),
            "%d.50" % i]


def oss_server(sluice_factory):
    srv = sluice_factory("oss", config=CONFIG)
    dh = srv.client()
    project = unique_name("p")
    dh.create_project(project, "oss connector")
    topic = unique_name("t")
    dh.create_tuple_topic(project, topic, 2, 1, RecordSchema.from_lists(NAMES, TYPES), "oss source")
    dh.wait_shards_ready(project, topic, 10)
    return dh, project, topic


def test_tutorial_oss_connector_writes_csv_objects(sluice_factory):
    dh, project, topic = oss_server(sluice_factory)
    schema = dh.get_topic(project, topic).record_schema
    n = 120
    for shard in (0, 1):
        put(dh, "json", project, topic,
            [TupleRecord(schema=schema, values=row_for(i)) for i in range(n) if i % 2 == shard], shard_id=str(shard))

    # as in the tutorial: endpoint, bucket, prefix, time_format, time_range, auth_mode, access id / key
    oss_endpoint, oss_bucket, prefix = env("SLUICE_TEST_S3_ENDPOINT"), new_bucket(), "datahub/orders"
    time_format, time_range = "%Y%m%d%H%M", 15
    connector_config = OssConnectorConfig(oss_endpoint, oss_bucket, prefix, time_format, time_range, AuthMode.AK,
                                          env("SLUICE_TEST_S3_ACCESS_KEY"), env("SLUICE_TEST_S3_SECRET_KEY"))
    cid = dh.create_connector(project, topic, ConnectorType.SINK_OSS, NAMES, connector_config).connector_id
    assert cid

    wait_for(lambda: len(rows(oss_bucket)) >= n or len(rows(oss_bucket)), "%d rows in the bucket" % n)
    got = sorted(rows(oss_bucket), key=lambda r: int(r[0]))
    assert got == [csv_for(i) for i in range(n)], "every row once, every value as written"

    # <prefix>/<window start>/<shard>_<first>_<last>.csv, the window on a 15-minute boundary
    for key in objects(oss_bucket):
        assert key.startswith(prefix + "/"), key
        window, name = key[len(prefix) + 1:].split("/")
        start = calendar.timegm(time.strptime(window, time_format))  # UTC
        assert start % (time_range * 60) == 0 and 0 <= time.time() - start < 2 * time_range * 60, key
        assert name.split("_")[0] in ("0", "1") and name.endswith(".csv"), key

    # more rows arrive as new objects; nothing is lost or doubled
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=row_for(i)) for i in range(n, n + 10)],
        shard_id="0")
    wait_for(lambda: len(rows(oss_bucket)) >= n + 10 or len(rows(oss_bucket)), "10 more rows")
    ids = sorted(int(r[0]) for r in rows(oss_bucket))
    assert ids == list(range(n + 10))
    states = dh.get_connector_shard_status(project, topic, cid).shard_status_infos
    assert all(s.state.value == "CONTEXT_EXECUTING" for s in states.values()), states


def test_sts_is_stored_and_hangs_with_the_reason(sluice_factory):
    dh, project, topic = oss_server(sluice_factory)
    cfg = OssConnectorConfig(env("SLUICE_TEST_S3_ENDPOINT"), new_bucket(), "p", "%Y%m%d%H%M", 60, AuthMode.STS)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_OSS, NAMES, cfg).connector_id
    got = dh.get_connector(project, topic, cid)
    assert got.config.auth_mode == AuthMode.STS

    def hanging():
        states = dh.get_connector_shard_status(project, topic, cid).shard_status_infos
        msgs = [s.last_error_message for s in states.values() if s.state.value == "CONTEXT_HANG"]
        return (len(msgs) == 2 and all("STS" in m and "self-hosted" in m for m in msgs)) or \
            {k: (s.state.value, s.last_error_message) for k, s in states.items()}

    wait_for(hanging, "both shards CONTEXT_HANG saying STS is not available self-hosted")
