#!/usr/bin/env python3
"""Restart time (issue 12, item 7): how long until `/health` answers, and until every shard
answers, after a clean shutdown and after kill -9, with a data set filled by `log_bench`.

1. Starts the `after` binary on a new data dir, creates project `restartbench` with TOPICS BLOB topics of
   SHARDS/TOPICS shards each, stops it (SIGTERM).
2. Fills every shard log with `log_bench fill` (FRAMES frames of PAYLOAD bytes, round-robin,
   segments of SEGMENT_BYTES) and closes the logs cleanly.
3. For each binary (before, then after):
   clean:  start; time to the first 200 from /health; time of a LATEST GetCursor on one shard;
           time to LATEST GetCursor on every shard; RSS; SIGTERM (timed).
   kill9:  start; GetCursor on every shard (recovers all); kill -9; start again and time the
           same steps.
Times are from process spawn. Python's standard library only.

usage: restart_bench.py --after BIN [--before BIN] --log-bench BIN [--gb 2] [--shards 400]
                        [--payload 1000] [--segment-bytes 8388608] [--work DIR]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memory"))
import memory_bench as mb  # noqa: E402  (signing, request, free_port, rss_kib)

TOPICS = 4


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(binary, data, port, log):
    env = dict(os.environ, SLUICE_LOG="warn", SLUICE_ACCESS_KEY=mb.KEY)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
         "--access-id", mb.ID], stdout=log, stderr=log, env=env)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{binary} exited with {proc.returncode}")
        try:
            if mb.request(port, "GET", "/health", b"", timeout=5)[0] == 200:
                return proc, t0, time.monotonic() - t0
        except OSError:
            time.sleep(0.01)


def cursor(port, topic, shard):
    st, body = mb.request(port, "POST", f"/projects/restartbench/topics/{topic}/shards/{shard}",
                          json.dumps({"Action": "cursor", "Type": "LATEST"}).encode())
    if st != 200:
        raise SystemExit(f"GetCursor {topic}/{shard}: {st} {body[:200]!r}")
    return json.loads(body)["Sequence"]


def shards(per_topic):
    return [(f"t{t}", s) for t in range(TOPICS) for s in range(per_topic)]


def stop(proc):
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(600)
    return time.monotonic() - t


def measure(label, binary, data, per_topic, log, kill9):
    port = mb.free_port()
    if kill9:
        proc, _, _ = start(binary, data, port, log)
        for topic, s in shards(per_topic):
            cursor(port, topic, s)
        proc.kill()
        proc.wait()
        port = mb.free_port()
    proc, t0, health = start(binary, data, port, log)
    cursor(port, "t0", 0)
    first = time.monotonic() - t0
    total = 0
    for topic, s in shards(per_topic):
        total += cursor(port, topic, s) + 1
    every = time.monotonic() - t0
    rss = mb.rss_kib(proc.pid, "VmRSS") / 1024
    cpu = cpu_secs(proc.pid)
    down = stop(proc)
    print(f"| {label} | {'kill -9' if kill9 else 'clean'} | {health:.2f} | {first:.2f} | "
          f"{every:.2f} | {cpu:.2f} | {rss:.0f} | {down:.2f} |")
    sys.stdout.flush()
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--after", required=True)
    ap.add_argument("--before")
    ap.add_argument("--log-bench", required=True)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--shards", type=int, default=400)
    ap.add_argument("--payload", type=int, default=1000)
    ap.add_argument("--segment-bytes", type=int, default=8 << 20)
    ap.add_argument("--work")
    ap.add_argument("--reuse", action="store_true",
                    help="measure the data a previous run left in --work (same --gb/--payload)")
    args = ap.parse_args()
    assert args.shards % TOPICS == 0
    per_topic = args.shards // TOPICS
    work = args.work or tempfile.mkdtemp(prefix="sluice-restart-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "server.log"), "w")
    procs = []
    frames = int(args.gb * 1e9 / (args.payload + 36))
    try:
        if args.reuse:
            print(f"data: reused from {data}\n")
        else:
            fill(args, data, per_topic, log, procs)
        print("| binary | restart after | /health s | first shard s | all shards s | "
              "server CPU s | RSS MiB | SIGTERM s |")
        print("|---|---|---|---|---|---|---|---|")
        for label, binary in [("before", args.before), ("after", args.after)]:
            if not binary:
                continue
            for kill9 in (False, True):
                total = measure(label, binary, data, per_topic, log, kill9)
                # the crash check: every frame written is there, once, after either restart
                assert total == frames, (total, frames)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        log.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def fill(args, data, per_topic, log, procs):
    """Creates the project and topics with the server, then fills every shard log directly."""
    port = mb.free_port()
    proc, _, _ = start(args.after, data, port, log)
    procs.append(proc)
    st, body = mb.request(port, "POST", "/projects/restartbench",
                          json.dumps({"Comment": "r"}).encode())
    assert st in (200, 201), (st, body)
    for t in range(TOPICS):
        st, body = mb.request(port, "POST", f"/projects/restartbench/topics/t{t}", json.dumps(
            {"ShardCount": per_topic, "Lifecycle": 7, "RecordType": "BLOB",
             "Comment": ""}).encode())
        assert st in (200, 201), (st, body)
    stop(proc)
    frames = int(args.gb * 1e9 / (args.payload + 36))
    done = subprocess.run(
        [args.log_bench, "fill", os.path.join(data, "topics"), str(args.shards), str(frames),
         str(args.payload), str(args.segment_bytes), "clean"],
        check=True, capture_output=True, text=True)
    print(f"data: {done.stdout.strip()}\n")


if __name__ == "__main__":
    main()
