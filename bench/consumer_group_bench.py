#!/usr/bin/env python3
"""Consumer-group benchmark (issue 4): pydatahub 2.29.0's high-level clients against Sluice.

1. Failover: two group consumers share a 4-shard topic; one is killed with SIGKILL while
   reading; the time from its death to the survivor's first record from one of its shards is
   printed, next to the effective session timeout (the target is ≤ session timeout + 2 s).
2. Throughput: the same N records (4 shards) read three ways in one run:
   - group:  DatahubConsumer in a consumer group (join/heartbeat/offsets, auto-commit);
   - shards: DatahubConsumer with explicit shard_ids (offsets, no group protocol);
   - plain:  a loop of get_tuple_records over the shards (PB protocol, limit 1000);
   - protocol: the same loop as a group member speaking the group protocol itself with
     pydatahub's low-level calls: join, heartbeat for its assignment and every session/6,
     open offsets (session), get_tuple_records with the sub-id header, commit every 5 s and at
     the end, leave. This is what the group protocol costs when the client is not the bottleneck.
   Rates are records/s from the first record to the N-th, so the group's wait for its first
   assignment (client constants: first heartbeat 5 s after join, then a 2 s poll) is not counted.
   The topic holds N + --extra records, so that no shard runs dry inside the timed window:
   when a shard returns an empty read, pydatahub's ShardReader queues a 2 s pause that blocks
   read() even while other shards have buffered records (and OffsetSelectStrategy re-selects
   dry shards every 10 s), so reading a finite backlog to its very end measures those pauses,
   not throughput (see README-consumers.md and bench/consumer_profile.py).

Usage: SLUICE_BIN=target/release/sluice <venv>/bin/python bench/consumer_group_bench.py [--records N]
"""

import argparse
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "compat"))

from conftest import SluiceServer  # noqa: E402
from consumer_util import SCHEMA, ConsumerProc, consumer_config, keyed_topic, producer, wait_for  # noqa: E402
from datahub.client import DatahubConsumer  # noqa: E402
from datahub.models import CursorType, OffsetWithSession, TupleRecord  # noqa: E402
from util import make_client  # noqa: E402


def produce(endpoint, project, topic, n, batch=1000):
    p = producer(endpoint, project, topic)
    for lo in range(0, n, batch):
        p.write([TupleRecord(schema=SCHEMA, values=["k%d" % (i % 8), i]) for i in range(lo, min(lo + batch, n))])
    threading.Thread(target=p.close, daemon=True).start()


def failover(srv, dh, workdir, run):
    project = "bench_fail_%d" % run
    dh.create_project(project, "")
    topic, sub_id = keyed_topic(dh, project, shards=4)
    produce(srv.endpoint, project, topic, 6000)
    a = ConsumerProc(srv.endpoint, project, topic, sub_id, os.path.join(workdir, "a%d.jsonl" % run), idle=6, delay=0.005)
    b = ConsumerProc(srv.endpoint, project, topic, sub_id, os.path.join(workdir, "b%d.jsonl" % run), idle=6, delay=0.005)
    try:
        wait_for(lambda: len({r["shard"] for r in a.records()}) == 2 and len({r["shard"] for r in b.records()}) == 2,
                 60, what="both consumers reading")
        time.sleep(2)
        a.kill()
        killed = time.time()
        shards = {r["shard"] for r in a.records()}
        first = wait_for(lambda: [r for r in b.records() if r["shard"] in shards and r["t"] > killed], 60,
                         interval=0.05, what="takeover")
        return min(r["t"] for r in first) - killed
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.kill()


def timed_consumer(consumer, n):
    count, start = 0, None
    deadline = time.monotonic() + 30  # a group member waits ~5 s for its first heartbeat
    while count < n:
        rec = consumer.read(timeout=5)
        if rec is None:
            if start is None and time.monotonic() < deadline:
                continue
            raise SystemExit("consumer stalled after %d records" % count)
        if start is None:
            start = time.perf_counter()
        count += 1
    return (n - 1) / (time.perf_counter() - start)


def throughput(srv, dh, n, extra, run):
    project = "bench_rate_%d" % run
    dh.create_project(project, "")
    topic, sub_group = keyed_topic(dh, project, shards=4)
    sub_shards = dh.create_subscription(project, topic, "explicit shards").sub_id
    produce(srv.endpoint, project, topic, n + extra)
    # fetch_limit 1000 = the server's max_read_records; it is the only ConsumerConfig knob on the
    # read path (pydatahub 2.29.0 stores max_record_buffer_size but never uses it)
    cfg = consumer_config(srv.endpoint, fetch_limit=1000)
    rates = {}
    # alternate which consumer goes first, so neither always meets a cold server or page cache
    for kind in (["group", "shards"] if run % 2 == 0 else ["shards", "group"]):
        if kind == "group":
            c = DatahubConsumer(project, topic, sub_group, cfg)
        else:
            c = DatahubConsumer(project, topic, sub_shards, cfg, shard_ids=["0", "1", "2", "3"])
        rates[kind] = timed_consumer(c, n)
        c.close()

    pb = make_client(srv.endpoint, "pb", "lz4")
    start, count = time.perf_counter(), 0
    for shard in ["0", "1", "2", "3"]:
        cursor = pb.get_cursor(project, topic, shard, CursorType.OLDEST).cursor
        while count < n:
            res = pb.get_tuple_records(project, topic, shard, SCHEMA, cursor, min(1000, n - count))
            if not res.records:
                break
            count += len(res.records)
            cursor = res.next_cursor
    rates["plain"] = count / (time.perf_counter() - start)
    assert count == n, count
    rates["protocol"] = group_protocol_loop(pb, project, topic, dh.create_subscription(project, topic, "lean").sub_id, n)
    return rates


def group_protocol_loop(pb, project, topic, sub_id, n, session_ms=10_000, commit_every=5.0):
    """Reads n records as the only member of a group, speaking the protocol directly."""
    joined = pb.join_group(project, topic, sub_id, session_ms)
    consumer, version = joined.consumer_id, joined.version_id
    beat_every = joined.session_timeout / 6000.0
    shards = []
    while len(shards) < 4:
        shards = sorted(pb.heart_beat(project, topic, sub_id, consumer, version, shards, []).shard_list, key=int)
    opened = pb.init_and_get_subscription_offset(project, topic, sub_id, shards).offsets
    last = {}
    start, count = time.perf_counter(), 0
    next_beat, next_commit = time.monotonic() + beat_every, time.monotonic() + commit_every

    def commit():
        pb.update_subscription_offset(project, topic, sub_id, {
            s: OffsetWithSession(seq, ts, opened[s].version, opened[s].session_id) for s, (seq, ts) in last.items()})

    for shard in shards:
        cursor = pb.get_cursor(project, topic, shard, CursorType.OLDEST).cursor
        while count < n:
            res = pb.get_tuple_records(project, topic, shard, SCHEMA, cursor, min(1000, n - count), sub_id=sub_id)
            if not res.records:
                break
            count += len(res.records)
            cursor = res.next_cursor
            tail = res.records[-1]
            last[shard] = (tail.sequence, tail.system_time)
            now = time.monotonic()
            if now >= next_beat:
                pb.heart_beat(project, topic, sub_id, consumer, version, shards, [])
                next_beat = now + beat_every
            if now >= next_commit:
                commit()
                next_commit = now + commit_every
    commit()
    rate = count / (time.perf_counter() - start)
    pb.leave_group(project, topic, sub_id, consumer, version)
    assert count == n, count
    committed = pb.get_subscription_offset(project, topic, sub_id).offsets
    assert all(committed[s].sequence == last[s][0] for s in last), "the commits did not land"
    return rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--extra", type=int, default=8000,
                    help="records written beyond the N read (keeps every shard non-empty while timed)")
    ap.add_argument("--rate-runs", type=int, default=3)
    ap.add_argument("--failover-runs", type=int, default=3)
    args = ap.parse_args()
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        raise SystemExit("set SLUICE_BIN to the sluice binary")
    with tempfile.TemporaryDirectory() as work:
        srv = SluiceServer(binary, os.path.join(work, "data"), os.path.join(work, "sluice.log")).start()
        try:
            dh = srv.client("json")
            session = 10.0  # the server's minimum session timeout; the client asks for 6 s
            times = [failover(srv, dh, work, i) for i in range(args.failover_runs)]
            print("failover: session timeout %.1f s, death -> shards read by survivor: %s s (max %.2f, target <= %.1f)"
                  % (session, ", ".join("%.2f" % t for t in times), max(times), session + 2))
            runs = []
            for i in range(args.rate_runs):
                rates = throughput(srv, dh, args.records, args.extra, i)
                runs.append(rates)
                print("throughput run %d (%d of %d records, 4 shards): group %.0f rec/s, explicit shards %.0f rec/s, "
                      "plain get_records %.0f rec/s, group protocol loop %.0f rec/s"
                      % (i + 1, args.records, args.records + args.extra, rates["group"], rates["shards"],
                         rates["plain"], rates["protocol"]), flush=True)
            med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
            print("median: group %.0f, explicit shards %.0f, plain %.0f, group protocol loop %.0f rec/s"
                  % (med["group"], med["shards"], med["plain"], med["protocol"]))
            print("group protocol loop vs plain get_records loop (same client, same shards): %.1f%% overhead"
                  % (100 * (1 - med["protocol"] / med["plain"])))
            print("group overhead vs explicit-shard consumer (same SDK read path): %.1f%%; "
                  "consumer (group) vs plain get_records loop: %.1f%%"
                  % (100 * (1 - med["group"] / med["shards"]), 100 * (1 - med["group"] / med["plain"])))
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
