"""SINK_OTS throughput through a live `sluice serve` into compat/ots_server.py (the Tablestore
test server built on the official `tablestore` package), and that server's own ceiling.

usage (with the compat venv; bench/ots/run.sh does all of it):
    SLUICE_ENDPOINT=http://127.0.0.1:PORT SLUICE_PID=PID OTS_ENDPOINT=http://127.0.0.1:PORT2 OTS_PID=PID2 \
        python bench/ots/bench_ots.py [connector|ceiling]

connector: a 4-shard topic (id BIGINT, ts TIMESTAMP, s STRING, ~100 bytes a row) gets ROWS records
    (default 200,000) BEFORE the SINK_OTS connector is created from the earliest data; timed until
    the server holds every row. Reports rows/s and the CPU seconds of both processes (per million).
ceiling: the same rows, pre-encoded with the package (PlainBuffer rows, BatchWriteRow of 200 rows,
    signed with its SignV2), POSTed straight to the server from 4 threads: what the server alone
    can take, to tell whether it is the bottleneck.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

from datahub import DataHub
from datahub.models import AuthMode, ConnectorType, FieldType, RecordSchema, TupleRecord
from datahub.models.connector import OtsConnectorConfig
from tablestore.auth import RequestContext, SignV2
from tablestore.credentials import Credentials
from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder
import tablestore.protobuf.table_store_pb2 as pb2

ACCESS_ID = os.environ.get("SLUICE_ACCESS_ID", "sluiceCompatId")
ACCESS_KEY = os.environ.get("SLUICE_ACCESS_KEY", "sluiceCompatKey0123456789")
OTS_ID, OTS_KEY, OTS_INSTANCE = "otsTestId", "otsTestKey0123456789", "sluice"
SHARDS = 4
TEXT = "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"


def cpu_secs(pid_var):
    pid = os.environ.get(pid_var)
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control(cmd):
    u = urllib.parse.urlsplit(os.environ["OTS_ENDPOINT"])
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("POST", "/_control", json.dumps(cmd))
    out = json.loads(c.getresponse().read())
    c.close()
    return out


def row_values(i):
    return [i, 1_700_000_000_000_000 + i, "row-%012d-%s" % (i, TEXT)]


def report(what, rows, secs, cpu_ots, cpu_sluice=None):
    line = "%s: %d rows in %.2f s = %.0f rows/s; ots_server CPU %.2f s (%.1f s per million rows)" % (
        what, rows, secs, rows / secs, cpu_ots, cpu_ots * 1e6 / rows)
    if cpu_sluice is not None:
        line += "; sluice CPU %.2f s (%.1f s per million rows)" % (cpu_sluice, cpu_sluice * 1e6 / rows)
    print(line, flush=True)


def connector(rows):
    dh = DataHub(ACCESS_ID, ACCESS_KEY, os.environ["SLUICE_ENDPOINT"], user_agent="sluice-bench")
    project, topic = "bench_%s" % uuid.uuid4().hex[:12], "t_%s" % uuid.uuid4().hex[:12]
    names = ["id", "ts", "s"]
    dh.create_project(project, "bench")
    dh.create_tuple_topic(project, topic, SHARDS, 1,
                          RecordSchema.from_lists(names, [FieldType.BIGINT, FieldType.TIMESTAMP, FieldType.STRING]),
                          "bench")
    dh.wait_shards_ready(project, topic, 10)
    schema = dh.get_topic(project, topic).record_schema
    t0 = time.time()
    for start in range(0, rows, 4000):
        for shard in range(SHARDS):
            recs = []
            for i in range(start + shard, min(start + 4000, rows), SHARDS):
                r = TupleRecord(schema=schema, values=row_values(i))
                r.shard_id = str(shard)
                recs.append(r)
            dh.put_records(project, topic, recs)
    print("loaded %d records in %.1f s (not timed)" % (rows, time.time() - t0), flush=True)
    table = "conn_%s" % uuid.uuid4().hex[:8]
    control({"create_table": [table, [["id", "INTEGER"]]]})
    time.sleep(2)
    cpu_ots, cpu_sluice = cpu_secs("OTS_PID"), cpu_secs("SLUICE_PID")
    started = time.time()
    cfg = OtsConnectorConfig(os.environ["OTS_ENDPOINT"], OTS_INSTANCE, table, AuthMode.AK, OTS_ID, OTS_KEY)
    dh.create_connector(project, topic, ConnectorType.SINK_OTS, names, cfg, -1)
    while control({"count": table})["rows"] < rows:
        time.sleep(0.1)
    secs = time.time() - started
    report("connector", rows, secs, cpu_secs("OTS_PID") - cpu_ots, cpu_secs("SLUICE_PID") - cpu_sluice)


def signed_request(body):
    headers = {
        "x-ots-date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "x-ots-apiversion": "2015-12-31", "x-ots-accesskeyid": OTS_ID, "x-ots-instancename": OTS_INSTANCE,
        "x-ots-contentmd5": base64.b64encode(hashlib.md5(body).digest()).decode(),
    }
    SignV2("utf-8").make_request_signature_and_add_headers("/BatchWriteRow", headers,
                                                           RequestContext(Credentials(OTS_ID, OTS_KEY)))
    return headers


def ceiling(rows, threads=4):
    table = "ceil_%s" % uuid.uuid4().hex[:8]
    control({"create_table": [table, [["id", "INTEGER"]]]})
    requests = []
    for start in range(0, rows, 200):
        req = pb2.BatchWriteRowRequest()
        t = req.tables.add()
        t.table_name = table
        for i in range(start, min(start + 200, rows)):
            v = row_values(i)
            r = t.rows.add()
            r.type = pb2.PUT
            r.row_change = bytes(PlainBufferBuilder.serialize_for_put_row([("id", v[0])], [("ts", v[1]), ("s", v[2])]))
            r.condition.row_existence = pb2.IGNORE
        body = req.SerializeToString()
        requests.append((body, signed_request(body)))
    u = urllib.parse.urlsplit(os.environ["OTS_ENDPOINT"])

    def send(part):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        for body, headers in part:
            c.request("POST", "/BatchWriteRow", body, headers)
            resp = c.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
        c.close()

    cpu_ots = cpu_secs("OTS_PID")
    started = time.time()
    workers = [threading.Thread(target=send, args=(requests[k::threads],)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    secs = time.time() - started
    assert control({"count": table})["rows"] == rows
    report("ceiling (pre-encoded BatchWriteRow, %d threads)" % threads, rows, secs, cpu_secs("OTS_PID") - cpu_ots)


if __name__ == "__main__":
    n = int(os.environ.get("ROWS", "200000"))
    {"connector": connector, "ceiling": ceiling}[sys.argv[1] if len(sys.argv) > 1 else "connector"](n)
