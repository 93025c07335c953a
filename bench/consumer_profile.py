#!/usr/bin/env python3
"""Where does a pydatahub consumer spend its time? (companion of consumer_group_bench.py)

Starts a fresh `sluice serve`, writes N records to a 4-shard tuple topic and reads them back one
way (--mode group | shards | plain | plain-sdk), while
- every HTTP request the client sends is tallied (endpoint kind, action, count, total/mean/max
  latency; for get-records also the records per response and how many came back empty), so the
  request pattern the server sees is printed without touching the server;
- the SDK's own "2 s pause after an empty read" pushes are counted;
- optionally (--profile FILE) the reading thread runs under cProfile; the top functions by
  cumulative and own time are printed.

Modes:
  group      DatahubConsumer in a consumer group, read() until N records
  shards     DatahubConsumer with explicit shard_ids, read() until N records
  plain      get_tuple_records loop (PB, limit = --fetch-limit), no per-record work
  plain-sdk  the same loop, but each record goes through the SDK's per-record consumer
             bookkeeping (queue put/get, MessageKey, offset request deque, ack), i.e. the
             minimum a record costs inside DatahubConsumer.read() without any network

Usage: SLUICE_BIN=target/release/sluice <venv>/bin/python bench/consumer_profile.py --mode group
"""

import argparse
import collections
import cProfile
import os
import pstats
import queue
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "compat"))

import requests  # noqa: E402
from conftest import SluiceServer  # noqa: E402
from consumer_util import SCHEMA, consumer_config, keyed_topic, producer  # noqa: E402
from datahub.client import DatahubConsumer  # noqa: E402
from datahub.client.consumer import shard_reader as sr_mod  # noqa: E402
from datahub.client.consumer.message_key import MessageKey  # noqa: E402
from datahub.client.common.offset_meta import ConsumeOffset  # noqa: E402
from datahub.models import CursorType, TupleRecord  # noqa: E402
from util import make_client  # noqa: E402


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows = collections.defaultdict(lambda: [0, 0.0, 0.0])  # key -> count, total s, max s
        self.get_records = []  # (t_start, dur, n_records)
        self.delays = 0
        self.events = []  # (t_start, dur, key)

    def add(self, key, dur):
        with self.lock:
            row = self.rows[key]
            row[0] += 1
            row[1] += dur
            row[2] = max(row[2], dur)


TALLY = Tally()


def kind_of(method, path, action):
    parts = path.split("?")[0].strip("/").split("/")
    # projects/p/topics/t[/shards[/s]] | [/subscriptions[/sub[/offsets]]]
    if len(parts) >= 6 and parts[4] == "shards":
        return "%s shards/{id} %s" % (method, action or "")
    if len(parts) == 5 and parts[4] == "shards":
        return "%s shards (list)" % method
    if len(parts) >= 7 and parts[6] == "offsets":
        return "%s offsets %s" % (method, action or "")
    if len(parts) >= 6 and parts[4] == "subscriptions":
        return "%s subscriptions/{sub} %s" % (method, action or "")
    if len(parts) == 4:
        return "%s topic" % method
    return "%s %s" % (method, "/".join(parts[:1] + parts[2:3] + parts[4:5]))


def install_http_tally():
    orig = requests.Session.send

    def send(self, req, **kw):
        start = time.perf_counter()
        resp = orig(self, req, **kw)
        dur = time.perf_counter() - start
        action = req.headers.get("x-datahub-request-action")
        if action is None and req.body and req.headers.get("Content-Type", "").startswith("application/json"):
            body = req.body if isinstance(req.body, bytes) else req.body.encode()
            i = body.find(b'"Action"')
            if i >= 0:
                action = body[i:i + 40].split(b'"')[3].decode()
        path = req.url.split("//", 1)[1].split("/", 1)[1]
        key = kind_of(req.method, path, action)
        if resp.status_code >= 400:
            key += " -> %d %s" % (resp.status_code, resp.headers.get("x-datahub-error-code", ""))
        TALLY.add(key, dur)
        with TALLY.lock:
            TALLY.events.append((start, dur, key))
        return resp

    requests.Session.send = send

    # records per get-records response and the SDK's 2 s pause after an empty read
    from datahub.client.consumer import message_reader as mr_mod
    orig_get = mr_mod.MessageReader.get_records

    def get_records(self, shard_id, cursor, fetch_limit):
        start = time.perf_counter()
        res = orig_get(self, shard_id, cursor, fetch_limit)
        with TALLY.lock:
            TALLY.get_records.append((start, time.perf_counter() - start, res.record_count, fetch_limit))
        return res

    mr_mod.MessageReader.get_records = get_records
    orig_delay = sr_mod.ShardReader._ShardReader__push_with_delay

    def push_with_delay(self, record_result, timeout):
        with TALLY.lock:
            TALLY.delays += 1
        return orig_delay(self, record_result, timeout)

    sr_mod.ShardReader._ShardReader__push_with_delay = push_with_delay


def produce(endpoint, project, topic, n, batch=1000):
    p = producer(endpoint, project, topic)
    for lo in range(0, n, batch):
        p.write([TupleRecord(schema=SCHEMA, values=["k%d" % (i % 8), i]) for i in range(lo, min(lo + batch, n))])
    threading.Thread(target=p.close, daemon=True).start()


def read_consumer(consumer, n, prof=None):
    count, start, waits = 0, None, 0
    while count < n:
        rec = consumer.read(timeout=5)
        if rec is None:
            if start is None and waits < 10:
                waits += 1
                continue
            print("!! consumer stalled: read(timeout=5) returned None after %d records" % count)
            return start, time.perf_counter(), count
        if start is None:
            start = time.perf_counter()
            if prof:  # profile the steady state only, not the wait for the first assignment
                prof.enable()
        count += 1
    return start, time.perf_counter(), n - 1


def read_plain(endpoint, project, topic, n, limit, sdk_bookkeeping):
    pb = make_client(endpoint, "pb", "lz4")
    start, count = time.perf_counter(), 0
    lock = threading.Lock()
    for shard in ["0", "1", "2", "3"]:
        cursor = pb.get_cursor(project, topic, shard, CursorType.OLDEST).cursor
        offsets = collections.deque()
        while count < n:
            t = time.perf_counter()
            res = pb.get_tuple_records(project, topic, shard, SCHEMA, cursor, min(limit, n - count))
            TALLY.get_records.append((t, time.perf_counter() - t, res.record_count, limit))
            if not res.records:
                break
            if sdk_bookkeeping:
                # what ShardReader/ShardGroupReader/OffsetManager do per record
                q = queue.Queue()
                for r in res.records:
                    q.put(r)
                for _ in range(res.record_count):
                    r = q.get()
                    off = ConsumeOffset(r.sequence, r.system_time, r.batch_index)
                    off.next_cursor = res.next_cursor
                    r.record_key = MessageKey(shard, off)
                    with lock:
                        offsets.append(r.record_key)
                    r.record_key.ack()
            count += res.record_count
            cursor = res.next_cursor
    assert count == n, count
    return start, time.perf_counter(), count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["group", "shards", "plain", "plain-sdk"], required=True)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--extra", type=int, default=0,
                    help="write this many records more than are read, so that no shard runs dry while timed")
    ap.add_argument("--fetch-limit", type=int, default=1000)
    ap.add_argument("--buffer", type=int, default=1000, help="ConsumerConfig.max_record_buffer_size")
    ap.add_argument("--timeline", action="store_true", help="print every HTTP request with its time")
    ap.add_argument("--profile", help="write a cProfile dump of the reading thread here")
    args = ap.parse_args()
    binary = os.environ["SLUICE_BIN"]
    with tempfile.TemporaryDirectory() as work:
        srv = SluiceServer(binary, os.path.join(work, "data"), os.path.join(work, "sluice.log")).start()
        try:
            dh = srv.client("json")
            project = "prof"
            dh.create_project(project, "")
            topic, sub_id = keyed_topic(dh, project, shards=4)
            produce(srv.endpoint, project, topic, args.records + args.extra)
            install_http_tally()
            cfg = consumer_config(srv.endpoint, fetch_limit=args.fetch_limit)
            cfg.max_record_buffer_size = args.buffer
            prof = cProfile.Profile() if args.profile else None
            t_open = time.perf_counter()
            consumer = None
            if args.mode == "group":
                consumer = DatahubConsumer(project, topic, sub_id, cfg)
            elif args.mode == "shards":
                consumer = DatahubConsumer(project, topic, sub_id, cfg, shard_ids=["0", "1", "2", "3"])
            if prof and not consumer:
                prof.enable()
            if consumer:
                start, end, n = read_consumer(consumer, args.records, prof)
            else:
                start, end, n = read_plain(srv.endpoint, project, topic, args.records, args.fetch_limit,
                                           args.mode == "plain-sdk")
            if prof:
                prof.disable()
            if consumer:
                consumer.close()
            wall = end - start
            print("mode %s: %d records, first->last %.3f s = %.0f records/s (open->first record %.2f s)"
                  % (args.mode, args.records, wall, n / wall, start - t_open))
            in_window = [g for g in TALLY.get_records if start <= g[0] + g[1] and g[0] <= end]
            busy = sum(min(g[0] + g[1], end) - max(g[0], start) for g in in_window)
            sizes = collections.Counter(g[2] for g in TALLY.get_records)
            print("get-records calls: %d total (limit %s), records per response: %s; empty: %d; "
                  "SDK 2 s empty-read pauses queued: %d"
                  % (len(TALLY.get_records), sorted({g[3] for g in TALLY.get_records}),
                     dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:6]), sizes.get(0, 0), TALLY.delays))
            if TALLY.get_records:
                durs = sorted(g[1] for g in TALLY.get_records if g[2] > 0)
                print("get-records latency (non-empty, as seen by the SDK incl. PB decode): mean %.1f ms, "
                      "p50 %.1f ms, max %.1f ms; time inside get-records within first->last: %.3f s (%.0f%%)"
                      % (1000 * sum(durs) / len(durs), 1000 * durs[len(durs) // 2], 1000 * durs[-1], busy,
                         100 * busy / wall))
            print("HTTP requests (whole run after the topic was written):")
            for key, (cnt, tot, mx) in sorted(TALLY.rows.items()):
                print("  %-48s %6d  total %7.3f s  mean %6.1f ms  max %6.1f ms" % (key, cnt, tot, 1000 * tot / cnt,
                                                                                  1000 * mx))
            if args.timeline:
                for t, dur, key in TALLY.events:
                    print("  t=%8.3f  %6.1f ms  %s" % (t - t_open, 1000 * dur, key))
            if prof:
                prof.dump_stats(args.profile)
                st = pstats.Stats(prof)
                st.sort_stats("tottime").print_stats(15)
                st.sort_stats("cumulative").print_stats(30)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
