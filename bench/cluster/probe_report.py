#!/usr/bin/env python3
"""Reads a bench/cluster/probe.sh output directory and prints, per phase: rate, latency, CPU
per put by process, the primary's wait mix; and per second of the open-loop (half) phase: the
slowest put beside vmstat, WAL and replication figures and the top waits of that second. The
archiver's statements (reading and deleting log rows) are counted apart, as "archiver"."""
import collections
import datetime
import json
import sys

OUT = sys.argv[1]


def secs(t):
    h, m, s = t.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def who(backend, query):
    if query.startswith("WITH want"):
        return "append"
    if query.startswith("SELECT bas") or query.startswith("DELETE FRO"):
        return "archiver"
    return backend.replace(" ", "-")[:12]


phases = []
for line in open(f"{OUT}/load.jsonl"):
    stamp, doc = line.split(" ", 1)
    p = json.loads(doc)
    p["end"] = secs(stamp)
    p["start"] = p["end"] - p["secs"]
    if p.get("started_unix_ms"):  # the load's own clock (UTC), as vmstat -t and the samplers
        p["start"] = (p["started_unix_ms"] / 1000) % 86400
        p["end"] = p["start"] + p["secs"]
    phases.append(p)

vm = {}
for line in open(f"{OUT}/vmstat.txt"):
    f = line.split()
    if len(f) > 17 and f[0].isdigit():
        vm[int(secs(f[-1]))] = dict(r=int(f[0]), bo=int(f[9]), us=int(f[12]), id=int(f[14]), wa=int(f[15]))

io, prev = {}, None
for line in open(f"{OUT}/io.txt"):
    f = line.strip().split("|")
    if len(f) != 8:
        continue
    t, v = int(secs(f[0])), [float(x or 0) for x in f[1:]]
    if prev:
        io[t] = dict(wal_mb=(v[0] - prev[0]) / 1e6, syncs=v[1] - prev[1], sync_ms=v[2] - prev[2],
                     ckpt=v[4] - prev[4], lag=v[6])
    prev = v

waits = collections.defaultdict(collections.Counter)
for line in open(f"{OUT}/wait.txt"):
    f = line.rstrip("\n").split("|")
    if len(f) != 5:
        continue
    waits[int(secs(f[0]))][f"{who(f[1], f[4])}:{f[2]}/{f[3]}"] += 1

for p in phases:
    cpu = p["cpu_s"]
    puts = max(p["puts"], 1)
    pg = sorted((v for k, v in cpu.items() if k.startswith("postgres")), reverse=True)
    nodes = sum(v for k, v in cpu.items() if k.startswith("sluice"))
    print(f"== {p['phase']}: {p['puts_per_s']:.0f} puts/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
          f"p99.9 {p['p999_ms']} ms, load {p['load']}")
    print(f"   CPU ms per put: all {sum(cpu.values()) * 1000 / puts:.2f}, PostgreSQL primary "
          f"{pg[0] * 1000 / puts:.2f}, standbys {sum(pg[1:]) * 1000 / puts:.2f}, Sluice nodes "
          f"{nodes * 1000 / puts:.2f}, haproxy {cpu.get('haproxy', 0) * 1000 / puts:.2f}")
    total = collections.Counter()
    for t in range(int(p["start"]), int(p["end"])):
        total.update(waits.get(t, {}))
    n = sum(total.values()) or 1
    print("   waits (share of samples):", ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in total.most_common(8)))
    for i, worst in enumerate(p.get("worst_ms_by_second") or []):
        t = int(p["start"]) + i
        v, w = vm.get(t, {}), io.get(t, {})
        top = ", ".join(f"{k}={c}" for k, c in waits.get(t, collections.Counter()).most_common(3))
        print(f"   {datetime.timedelta(seconds=t)} slowest {worst:5d} ms | r {v.get('r', '?'):>2} "
              f"idle {v.get('id', '?'):>2}% bo {v.get('bo', '?'):>6} | WAL {w.get('wal_mb', 0):4.1f} MB "
              f"{w.get('syncs', 0):4.0f} syncs {w.get('sync_ms', 0):5.0f} ms, lag {w.get('lag', 0):3.0f} ms, "
              f"ckpt {w.get('ckpt', 0):4.0f} | {top}")
