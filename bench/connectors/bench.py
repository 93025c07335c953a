"""SINK_ES and SINK_FC throughput through a live `sluice serve`, against the bench tool's direct
baselines in the same run (issue 11, "Benchmark"). `run.sh` starts everything and calls this.

Environment: SLUICE_ENDPOINT, SLUICE_PID (the server), SLUICE_TEST_ES_ENDPOINT and ES_PID
(osmem-server), CONNBENCH (the connbench binary), ROWS (default 1,000,000), ES_ROWS (default
30,000: osmem-server indexes ~1-2 k documents/s), RUNS (default 3), PERF_DIR (optional: `perf
record` the server during every connector run), OUT (the Markdown summary, default
bench/out/connectors.md). Arguments: any of `osmem es fc` (default all three).

1. Two 4-shard TUPLE topics (id BIGINT, ts TIMESTAMP, s STRING; ~100 bytes a record) are loaded
   with ROWS and ES_ROWS records (record i in shard i % 4, 1000-record batch-protocol puts),
   untimed. Every connector run reads one of them from its earliest data.
2. `osmem`: RUNS rounds against osmem-server of `connbench es-bulk` (the same documents straight
   to `_bulk`, 1000 per request, one request in flight per shard: what SINK_ES does with the
   default connector_batch_records 5000), a SINK_ES connector (IDFields id, ProxyMode true) into
   a fresh index, timed from create_connector until the last document of every shard can be
   fetched by id, and `connbench es-sink` (the sink alone, no server). Every run checks `_count`
   == ES_ROWS afterwards (untimed).
3. `es`: the same with ROWS documents against the bench tool's stand-in (`connbench receiver`,
   answers every `_bulk` item 201 at once), the connector timed until the stand-in has counted
   ROWS documents for its index.
4. `fc`: the same against the stand-in as a Function Compute endpoint (answers 200 at once,
   counts records, checks no signature): `fc-direct` (payloads straight to it), a SINK_FC
   connector (timed until the stand-in has counted ROWS records), `fc-sink`.
5. CPU seconds (utime + stime from /proc/<pid>/stat) of the server, the target (osmem-server or
   the stand-in) and the bench tool per run, per million records; the load (uptime) before and
   after.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from datahub.models import AuthMode, ConnectorType, FieldType, RecordSchema, TupleRecord
from datahub.models.connector import EsConnectorConfig, FcConnectorConfig

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "compat"))
from util import make_client  # noqa: E402

SHARDS = 4
BULK_ITEMS = 1000  # SINK_ES's BULK_ITEMS
FLUSH = 5000  # connector_batch_records default: records per flush of one shard's task
TS0 = 1_700_000_000_000_000
TEXT = "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"
COLUMNS = ["id", "ts", "s"]
FC_ID, FC_KEY = "benchId", "benchKey0123456789"
POLL_S = 0.02
# Both the bench tool and the connector runs create their index with this (connbench es_create).
INDEX_BODY = {"settings": {"number_of_shards": 1}}


def cpu_secs(pid):
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids):
    return {name: cpu_secs(pid) for name, pid in pids.items()}


def cpu_delta(before, pids):
    after = cpu_snapshot(pids)
    return {name: round(after[name] - before[name], 2) for name in before}


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def load(dh, rows):
    project = "bench_%s" % uuid.uuid4().hex[:12]
    topic = "t_%s" % uuid.uuid4().hex[:12]
    dh.create_project(project, "connector bench")
    schema = RecordSchema.from_lists(COLUMNS, [FieldType.BIGINT, FieldType.TIMESTAMP, FieldType.STRING])
    dh.create_tuple_topic(project, topic, SHARDS, 1, schema, "connector bench")
    dh.wait_shards_ready(project, topic, 10)
    t0 = time.time()
    for start in range(0, rows, SHARDS * 1000):
        for shard in range(SHARDS):
            recs = [TupleRecord(schema=schema, values=[i, TS0 + i, "row-%012d-%s" % (i, TEXT)])
                    for i in range(start + shard, min(start + SHARDS * 1000, rows), SHARDS)]
            if recs:
                dh.put_records_by_shard(project, topic, str(shard), recs)
    print("loaded %d records into %s/%s in %.1f s (not timed)" % (rows, project, topic, time.time() - t0), flush=True)
    return project, topic


def last_ids(rows):
    return [i for i in range(max(0, rows - SHARDS), rows)]


def tool(args, pids, target):
    env = dict(os.environ, CPU_PIDS=",".join("%s:%s" % kv for kv in pids.items()))
    out = subprocess.run([os.environ["CONNBENCH"]] + [str(a) for a in args], env=env, capture_output=True,
                         text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError("connbench %s failed: %s%s" % (args[0], out.stdout, out.stderr))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return dict(json.loads(line[len("RESULT "):]), target=target)


class Perf:
    """`perf record` of the server while a connector run is timed, when PERF_DIR is set."""

    def __init__(self, name):
        self.proc = None
        d = os.environ.get("PERF_DIR")
        if d:
            os.makedirs(d, exist_ok=True)
            self.proc = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", os.environ["SLUICE_PID"], "-o",
                                          os.path.join(d, name + ".data")], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc:
            self.proc.send_signal(2)
            self.proc.wait(60)


def es_connector(dh, project, topic, es, rows, pids, run, target):
    """One SINK_ES connector run into a fresh index at `es` (osmem-server or the stand-in)."""
    index = "bench_conn_%d_%s" % (run, uuid.uuid4().hex[:8])
    status, out = http("PUT", "%s/%s" % (es, index), INDEX_BODY)
    assert status == 200, out
    time.sleep(float(os.environ.get("SETTLE_SECS", "2")))
    perf = Perf("es-connector-%s-%d" % (target, run))
    before = cpu_snapshot(pids)
    started = time.time()
    cid = dh.create_connector(project, topic, ConnectorType.SINK_ES, COLUMNS,
                              EsConnectorConfig(index, es, "", "", ["id"], [], True), -1).connector_id
    if target == "osmem":
        # each shard's documents arrive in order: done when the last of every shard is there
        waiting = last_ids(rows)
        while waiting:
            waiting = [i for i in waiting if http("GET", "%s/%s/_doc/%d" % (es, index, i))[0] != 200]
            if waiting:
                time.sleep(POLL_S)
    else:
        while es_count(es, index) < rows:
            time.sleep(POLL_S)
    secs = time.time() - started
    cpu = cpu_delta(before, pids)
    perf.stop()
    dh.delete_connector(project, topic, cid)
    http("POST", "%s/%s/_refresh" % (es, index))
    count = es_count(es, index)
    http("DELETE", "%s/%s" % (es, index))
    # osmem-server dedups by _id; the stand-in counts every item (at-least-once may add some)
    assert count == rows, "index %s holds %d documents, expected %d" % (index, count, rows)
    return {"mode": "es-connector", "target": target, "rows": rows, "secs": secs, "rate": rows / secs, "cpu": cpu}


def es_count(es, index):
    return json.loads(http("GET", "%s/%s/_count" % (es, index))[1])["count"]


def fc_count(receiver):
    return int(http("GET", receiver + "/count")[1])


def fc_connector(dh, project, topic, receiver, rows, pids, run):
    time.sleep(float(os.environ.get("SETTLE_SECS", "2")))
    n0 = fc_count(receiver)
    perf = Perf("fc-connector-%d" % run)
    before = cpu_snapshot(pids)
    started = time.time()
    cfg = FcConnectorConfig(receiver, "svc", "fn", AuthMode.AK, FC_ID, FC_KEY)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, COLUMNS, cfg, -1).connector_id
    while fc_count(receiver) - n0 < rows:
        time.sleep(POLL_S)
    secs = time.time() - started
    cpu = cpu_delta(before, pids)
    perf.stop()
    dh.delete_connector(project, topic, cid)
    got = fc_count(receiver) - n0
    assert got == rows, "the receiver counted %d records, expected %d" % (got, rows)
    return {"mode": "fc-connector", "target": "stand-in", "rows": rows, "secs": secs, "rate": rows / secs, "cpu": cpu}


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def show(r):
    cpu = ", ".join("%s %.2f s" % kv for kv in sorted(r["cpu"].items()))
    print("  %-13s %-9s %7d records in %6.2f s = %9.0f records/s; CPU %s"
          % (r["mode"], r["target"], r["rows"], r["secs"], r["rate"], cpu), flush=True)
    return r


WHAT = {
    "es-bulk": "bench tool → `_bulk` (baseline)",
    "es-connector": "SINK_ES connector in `sluice serve`",
    "es-sink": "`sinks::es` alone, no server",
    "fc-direct": "bench tool → receiver (baseline)",
    "fc-connector": "SINK_FC connector in `sluice serve`",
    "fc-sink": "`sinks::fc` alone, no server",
}
TARGETS = {"osmem": "ES, osmem-server", "stand-in": None}


def summary(results, load_before, load_after, runs):
    lines = ["%s; %d runs of each path, alternating (baseline, connector, sink alone); load before: %s; after: %s"
             % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), runs, load_before, load_after), "",
             "| target | path | records | records/s, median | best | runs (records/s) | server CPU s / M records "
             "| target CPU s / M | bench tool CPU s / M |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    med, best = {}, {}
    groups = []
    for r in results:
        key = (r["target"], r["mode"])
        if key not in groups:
            groups.append(key)
    for key in groups:
        target, mode = key
        rs = [r for r in results if (r["target"], r["mode"]) == key]
        rates = [r["rate"] for r in rs]
        med[key], best[key] = statistics.median(rates), max(rates)

        def per_m(name):
            vals = [r["cpu"][name] / r["rows"] * 1e6 for r in rs if name in r["cpu"]]
            return "%.2f" % statistics.median(vals) if vals else "–"
        where = "ES, osmem-server" if target == "osmem" else (
            "ES, stand-in" if mode.startswith("es") else "FC, stand-in")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            where, WHAT[mode], "{:,}".format(rs[0]["rows"]), "{:,.0f}".format(med[key]), "{:,.0f}".format(best[key]),
            " / ".join("{:,.0f}".format(x) for x in rates), per_m("server"), per_m("target"), per_m("tool")))
    lines.append("")
    for target in ("osmem", "stand-in"):
        for conn, base in (("es-connector", "es-bulk"), ("es-sink", "es-bulk"),
                           ("fc-connector", "fc-direct"), ("fc-sink", "fc-direct")):
            c, b = (target, conn), (target, base)
            if c in med and b in med:
                lines.append("- %s: %s ÷ %s = %.0f %% (medians), %.0f %% (best)" % (
                    target, conn, base, 100 * med[c] / med[b], 100 * best[c] / best[b]))
    return "\n".join(lines)


def wait_up(url):
    for _ in range(100):
        try:
            http("GET", url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s does not answer" % url)


def main():
    rows = int(os.environ.get("ROWS", "1000000"))
    es_rows = int(os.environ.get("ES_ROWS", "30000"))
    runs = int(os.environ.get("RUNS", "3"))
    es = os.environ["SLUICE_TEST_ES_ENDPOINT"]
    sluice_pid, es_pid = os.environ["SLUICE_PID"], os.environ["ES_PID"]
    only = sys.argv[1:] or ["osmem", "es", "fc"]
    dh = make_client(os.environ["SLUICE_ENDPOINT"], "batch", "lz4")
    load_before = uptime()
    print("==", load_before, flush=True)
    project, topic = load(dh, rows)
    small_project, small_topic = load(dh, es_rows)
    port = free_port()
    standin = "http://127.0.0.1:%d" % port
    rx = subprocess.Popen([os.environ["CONNBENCH"], "receiver", str(port)], stdout=subprocess.DEVNULL)
    results = []
    try:
        wait_up(standin + "/count")
        osmem_pids = {"server": sluice_pid, "target": es_pid}
        standin_pids = {"server": sluice_pid, "target": str(rx.pid)}
        for run in range(runs if "osmem" in only else 0):
            index = "bench_bulk_%d_%s" % (run, uuid.uuid4().hex[:8])
            results.append(show(tool(["es-bulk", es, index, es_rows, SHARDS, BULK_ITEMS], osmem_pids, "osmem")))
            results.append(show(es_connector(dh, small_project, small_topic, es, es_rows, osmem_pids, run, "osmem")))
            index = "bench_sink_%d_%s" % (run, uuid.uuid4().hex[:8])
            results.append(show(tool(["es-sink", es, index, es_rows, SHARDS, FLUSH], osmem_pids, "osmem")))
        for run in range(runs if "es" in only else 0):
            index = "bench_bulk_%d_%s" % (run, uuid.uuid4().hex[:8])
            results.append(show(tool(["es-bulk", standin, index, rows, SHARDS, BULK_ITEMS], standin_pids, "stand-in")))
            results.append(show(es_connector(dh, project, topic, standin, rows, standin_pids, run, "stand-in")))
            index = "bench_sink_%d_%s" % (run, uuid.uuid4().hex[:8])
            results.append(show(tool(["es-sink", standin, index, rows, SHARDS, FLUSH], standin_pids, "stand-in")))
        for run in range(runs if "fc" in only else 0):
            results.append(show(tool(["fc-direct", standin, rows, SHARDS, FLUSH], standin_pids, "stand-in")))
            results.append(show(fc_connector(dh, project, topic, standin, rows, standin_pids, run)))
            results.append(show(tool(["fc-sink", standin, rows, SHARDS, FLUSH], standin_pids, "stand-in")))
    finally:
        rx.terminate()
        rx.wait(10)
    load_after = uptime()
    print("==", load_after, flush=True)
    text = summary(results, load_before, load_after, runs)
    print(text)
    out = os.environ.get("OUT", os.path.join(os.path.dirname(__file__), "..", "out", "connectors.md"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text + "\n\n<details><summary>raw results</summary>\n\n```\n%s\n```\n</details>\n"
                % "\n".join(json.dumps(r) for r in results))


if __name__ == "__main__":
    main()
