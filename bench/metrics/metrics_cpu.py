#!/usr/bin/env python3
"""Server CPU per record put with metrics recording on and off (issue 13), in the same run.

Starts the given `sluice` binary once per run on a private port and data dir, alternately with
`metrics_listen` set (recording and /metrics on) and `metrics_listen = ""` (both off), and which
mode goes first alternates too. Each run creates a BLOB topic of 4 shards, then WRITERS threads
(one keep-alive connection each) send protobuf puts by shard (fsync before ack, the default)
for each scenario; the server's CPU time (utime + stime from /proc/PID/stat) over the phase,
divided by the records, is the CPU µs per record. With recording on, a scrape of /metrics ends
each run (checking that the puts were counted). Python's standard library only; requests are
signed like the SDKs sign (helpers from bench/memory/memory_bench.py).

usage: metrics_cpu.py BINARY [--repeats 5] [--records 200000]
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memory"))
from memory_bench import ID, KEY, envelope, field, free_port, request, sign  # noqa: E402
from email.utils import formatdate  # noqa: E402

WRITERS = 8
SHARDS = 4
PAYLOAD = b"v" * 100
# (name, records per put, share of --records it sends)
SCENARIOS = [("1000-record puts", 1000, 1), ("10-record puts", 10, 20), ("1-record puts", 1, 100)]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def put_body(records):
    rec = field(1, field(9, field(1, field(1, PAYLOAD))))
    return envelope(rec * records)


def writer(port, shard, body, puts, errors):
    path = f"/projects/bench/topics/blob/shards/{shard}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ctype = "application/x-protobuf"
    try:
        for _ in range(puts):
            headers = {"x-datahub-client-version": "1.1", "x-datahub-request-action": "pub"}
            date = formatdate(usegmt=True)
            headers.update({"Content-Type": ctype, "Date": date,
                            "Authorization": sign("POST", path, ctype, date, headers)})
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
    finally:
        conn.close()


def run(binary, metrics_on, records, work):
    port, mport = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="data-", dir=work)
    config = os.path.join(data + ".toml")
    with open(config, "w") as f:
        f.write('metrics_listen = "%s"\n' % (f"127.0.0.1:{mport}" if metrics_on else ""))
    log = open(data + ".log", "w")
    env = dict(os.environ, SLUICE_LOG="warn", SLUICE_ACCESS_KEY=KEY)
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                             "--access-id", ID, "--config", config], stdout=log, stderr=log, env=env)
    out = {}
    try:
        for _ in range(400):
            try:
                if request(port, "GET", "/health", b"")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        request(port, "POST", "/projects/bench", json.dumps({"Comment": "m"}).encode())
        request(port, "POST", "/projects/bench/topics/blob", json.dumps(
            {"ShardCount": SHARDS, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}).encode())
        time.sleep(0.5)
        total = 0
        for name, per_put, share in SCENARIOS:
            puts_each = max(records // share // per_put // WRITERS, 1)
            body = put_body(per_put)
            errors = []
            threads = [threading.Thread(target=writer, args=(port, i % SHARDS, body, puts_each, errors))
                       for i in range(WRITERS)]
            cpu0, t0, load0 = cpu_seconds(proc.pid), time.monotonic(), loadavg()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            assert not errors, errors[:5]
            n_records = puts_each * WRITERS * per_put
            total += n_records
            out[name] = {"records": n_records, "cpu_us_per_record": (cpu1 - cpu0) * 1e6 / n_records,
                         "records_per_s": n_records / (t1 - t0), "load": (load0 + loadavg()) / 2}
        if metrics_on:
            text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=30).read().decode()
            line = [x for x in text.splitlines() if x.startswith("sluice_topic_records_in_total{")]
            assert line and float(line[0].split()[-1]) == total, (line, total)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--records", type=int, default=200_000,
                    help="records of the 1000-record scenario per run (10-record puts send 1/20, 1-record 1/100)")
    ap.add_argument("--work-dir", default=None)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-metrics-bench-", dir=args.work_dir)
    results = {True: [], False: []}
    try:
        for i in range(args.repeats):
            for on in ([True, False] if i % 2 == 0 else [False, True]):
                print(f"run {i + 1} metrics {'on' if on else 'off'}", file=sys.stderr, flush=True)
                results[on].append(run(args.binary, on, args.records, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads = [r[n]["load"] for on in results for r in results[on] for n, _, _ in SCENARIOS]
    print(f"{args.repeats} runs per mode, alternating; {WRITERS} writers over {SHARDS} shards, "
          f"protobuf puts by shard of 100-byte BLOB records, fsync before ack; "
          f"1-minute load average during the runs {min(loads):.1f}–{max(loads):.1f}.\n")
    print("| scenario | records/run | CPU µs/record off (runs) | CPU µs/record on (runs) | median off | median on "
          "| on ÷ off (medians) | on ÷ off per pair: median (min–max) | records/s off (median) "
          "| records/s on (median) |")
    print("|---|---:|---|---|---:|---:|---:|---|---:|---:|")
    for name, _, _ in SCENARIOS:
        off = [r[name]["cpu_us_per_record"] for r in results[False]]
        on = [r[name]["cpu_us_per_record"] for r in results[True]]
        roff = statistics.median(r[name]["records_per_s"] for r in results[False])
        ron = statistics.median(r[name]["records_per_s"] for r in results[True])
        # The two runs of a pair ran back to back: their ratio is the least affected by the load's
        # drift over the whole benchmark.
        pairs = [a / b for a, b in zip(on, off)]
        print(f"| {name} | {results[False][0][name]['records']:,} | {' / '.join(f'{x:.2f}' for x in off)} "
              f"| {' / '.join(f'{x:.2f}' for x in on)} | {statistics.median(off):.2f} | {statistics.median(on):.2f} "
              f"| {statistics.median(on) / statistics.median(off):.3f} "
              f"| {statistics.median(pairs):.3f} ({min(pairs):.2f}–{max(pairs):.2f}) | {roff:,.0f} | {ron:,.0f} |")


if __name__ == "__main__":
    main()
