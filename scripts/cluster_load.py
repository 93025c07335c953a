"""Load and checks shared by the cluster fault tests (scripts/cluster_kill.py): pydatahub
producers that record every acknowledged record, a read-back that checks the shards' sequences,
group consumers in child processes, and a MySQL sink watcher.

Runs with the compat venv's python (pydatahub 2.29.0); imports compat/util.py. The bed is named by
the environment `scripts/cluster.sh env` prints (SLUICE_ENDPOINT, SLUICE_ACCESS_ID/KEY,
SLUICE_TEST_CLUSTER_SCRIPT, SLUICE_TEST_CLUSTER_BED); MySQL by scripts/services.sh
(SLUICE_TEST_MYSQL_*). A missing variable is a failure.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compat"))

from datahub.client import ConsumerConfig, DatahubConsumer  # noqa: E402
from datahub.models import FieldType, RecordSchema, TupleRecord  # noqa: E402

import util  # noqa: E402

# producer id, its counter, the producer's clock (ms) when it sent the put, the shard it went to
SCHEMA = RecordSchema.from_lists(["producer", "n", "t", "shard"],
                                 [FieldType.BIGINT, FieldType.BIGINT, FieldType.BIGINT, FieldType.BIGINT])


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit("error: %s is not set (eval \"$(scripts/cluster.sh env)\" first)" % name)
    return value


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Bed:
    """The bed's endpoint, credentials and fault commands."""

    def __init__(self):
        self.endpoint = env("SLUICE_ENDPOINT")
        self.access_id = env("SLUICE_ACCESS_ID")
        self.access_key = env("SLUICE_ACCESS_KEY")
        self.script = env("SLUICE_TEST_CLUSTER_SCRIPT")
        self.dir = env("SLUICE_TEST_CLUSTER_BED")

    def client(self, protocol="batch", **kw):
        kw.setdefault("retry_times", 0)
        kw.setdefault("read_timeout", 90)
        return util.make_client(self.endpoint, protocol, "lz4", self.access_id, self.access_key, **kw)

    def run(self, *args, timeout=180):
        """One scripts/cluster.sh command; its stdout."""
        out = subprocess.run(["bash", self.script, *args], stdout=subprocess.PIPE, timeout=timeout,
                             check=True, text=True, env={**os.environ, "BED": self.dir})
        return out.stdout.strip()


def retry(what, fn, attempts=60, pause=1.0):
    """Metadata calls through the balancer while a node is down: retried, 1 s apart."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any failure of the call is retried
            if i == attempts - 1:
                raise AssertionError("%s failed %d times, last: %r" % (what, attempts, e))
            time.sleep(pause)


def make_topic(bed, shards):
    dh = bed.client("json")
    project = util.unique_name("kill")
    retry("create project", lambda: dh.create_project(project, "cluster kill test"))
    topic = util.unique_name("t")
    retry("create topic", lambda: dh.create_tuple_topic(project, topic, shards, 7, SCHEMA, "cluster kill test"))
    retry("shards ready", lambda: dh.wait_shards_ready(project, topic, 30))
    return project, topic


class Producers:
    """`count` threads, each putting `per_put` records to one shard at a time (round robin over
    the shards, starting at its own), paced to `rate` puts/s each. A put that returns is
    acknowledged: its records go to `acked`. A failed put is counted and its records are not
    retried (a new put carries new counters), so an ambiguous failure can only add records."""

    def __init__(self, bed, project, topic, shards, count=8, per_put=10, rate=20.0, protocol="batch"):
        self.bed, self.project, self.topic, self.shards = bed, project, topic, shards
        self.count, self.per_put, self.rate, self.protocol = count, per_put, rate, protocol
        self.acked = {}  # (producer, n) -> shard
        self.failures = 0
        self.ok_times = []  # per producer: the times of acknowledged puts
        self.fail_times = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = []

    def start(self):
        for p in range(self.count):
            self.ok_times.append([])
            self.fail_times.append([])
            t = threading.Thread(target=self._run, args=(p,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=120)
            assert not t.is_alive(), "a producer did not stop within 120 s"

    def _run(self, p):
        client = self.bed.client(self.protocol)
        n = 0
        shard = p % self.shards
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            now_ms = int(time.time() * 1000)
            recs = [TupleRecord(schema=SCHEMA, values=[p, n + i, now_ms, shard]) for i in range(self.per_put)]
            try:
                util.put(client, self.protocol, self.project, self.topic, recs, str(shard))
                with self.lock:
                    for i in range(self.per_put):
                        self.acked[(p, n + i)] = shard
                self.ok_times[p].append(time.time())
            except Exception:  # noqa: BLE001 - the failure is counted; the next put goes on
                with self.lock:
                    self.failures += 1
                self.fail_times[p].append(time.time())
                time.sleep(0.2)
                client = self.bed.client(self.protocol)  # a fresh connection pool
            n += self.per_put
            shard = (shard + 1) % self.shards
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def write_gaps(self, since, until):
        """Per event window: the longest time any producer went without an acknowledged put."""
        worst = 0.0
        for times in self.ok_times:
            inside = [t for t in times if since <= t <= until]
            marks = [since] + inside + [until]
            worst = max(worst, max(b - a for a, b in zip(marks, marks[1:])))
        return worst


def read_back(bed, project, topic, shards):
    """Every record of every shard, through the balancer: {shard: [(seq, system_time, values)]}."""
    dh = bed.client("json", read_timeout=120)  # per-record sequences (PB and batch reads give 0 or the batch's)
    out = {}
    for s in range(shards):
        recs = retry("read shard %d" % s, lambda: util.read_all(dh, project, topic, str(s), SCHEMA), attempts=10)
        out[s] = [(r.sequence, r.system_time, list(r.values)) for r in recs]
    return out


def check_log(stored, acked, per_put=10):
    """The invariants of the stored log: dense sequences from 0, no sequence shared by two puts
    (a batch put is one entry: its records share one sequence), system time never backwards,
    every acknowledged record stored on the shard it was put to, no record stored twice.
    Returns (failures, stats)."""
    failures = []
    found = {}
    extra = 0
    for shard, recs in stored.items():
        puts_of_seq = {}
        for seq, _, v in recs:
            puts_of_seq.setdefault(seq, set()).add((v[0], v[1] - v[1] % per_put))
        seqs = sorted(puts_of_seq)
        if seqs != list(range(len(seqs))):
            gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1][:5]
            failures.append("shard %d: sequences not dense from 0 (first %s, breaks %s)" % (shard, seqs[:1], gaps))
        reused = [(q, sorted(p)) for q, p in puts_of_seq.items() if len(p) > 1]
        if reused:
            failures.append("shard %d: %d sequences hold records of two puts, e.g. %s" % (shard, len(reused), reused[:3]))
        order = [r[0] for r in recs]
        if order != sorted(order):
            failures.append("shard %d: records not returned in sequence order" % shard)
        times = [r[1] for r in recs]
        back = [(order[i], times[i], times[i + 1]) for i in range(len(times) - 1) if times[i + 1] < times[i]]
        if back:
            failures.append("shard %d: system time goes backwards %d times, e.g. %s" % (shard, len(back), back[:3]))
        for seq, _, v in recs:
            key = (v[0], v[1])
            if v[3] != shard:
                failures.append("shard %d seq %d holds a record put to shard %d" % (shard, seq, v[3]))
            if key in found:
                failures.append("record %s stored twice (shard %d seq %d and %s)" % (key, shard, seq, found[key]))
            found[key] = (shard, seq)
            if key not in acked:
                extra += 1
    lost = [k for k in acked if k not in found]
    if lost:
        failures.append("%d acknowledged records lost, e.g. %s" % (len(lost), sorted(lost)[:5]))
    stats = {"stored": sum(len(r) for r in stored.values()), "acked": len(acked), "lost": len(lost),
             "unacked_stored": extra, "entries": sum(len({r[0] for r in recs}) for recs in stored.values())}
    return failures, stats


# ---- group consumers ------------------------------------------------------------------------

class Consumer:
    """A DatahubConsumer of the topic's subscription in a child process (this file run as a
    script); one JSON line per record read: shard, seq, producer, n, put time, read time."""

    def __init__(self, bed, project, topic, sub_id, out_path, session_timeout_ms=10000):
        self.out_path = out_path
        self.log = open(out_path + ".log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "consume", bed.endpoint, project, topic, sub_id, out_path,
             str(session_timeout_ms)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "CLUSTER_ACCESS_ID": bed.access_id, "CLUSTER_ACCESS_KEY": bed.access_key})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def log_lines_with(self, text):
        """How many lines of the consumer's own output and of the SDK's log contain `text`."""
        n = 0
        for path in (self.out_path + ".log", self.out_path + ".sdk.log"):
            try:
                with open(path, errors="replace") as f:
                    n += sum(1 for line in f if text in line)
            except FileNotFoundError:
                pass
        return n

    def records(self):
        try:
            with open(self.out_path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []


def _keep_heartbeats_through_connection_errors():
    """pydatahub 2.29.0's heartbeat thread ends on any error that is not a DataHub error
    (`ConsumerHeartbeat.__heartbeat_once` re-raises it): one connection that haproxy closes when
    it takes a killed node out is enough. The consumer then misses its session timeout, rejoins
    under a new session while its old shard readers read on ("Subscription session has changed"
    from then on, shards read twice). An application behind a load balancer has to survive that,
    so this one does: the heartbeat notes the error and tries again at its next tick, as it does
    for DataHub errors. docs/cluster.md explains the caveat."""
    from datahub.client.consumer.consumer_heartbeat import ConsumerHeartbeat
    from datahub.exceptions import DatahubException

    once = ConsumerHeartbeat._ConsumerHeartbeat__heartbeat_once

    def heartbeat_once_surviving_connection_errors(self):
        try:
            once(self)
        except DatahubException:
            raise
        except Exception as e:  # noqa: BLE001 - the connection, not the protocol: retry next tick
            print("heartbeat connection error: %r" % (e,), flush=True)

    ConsumerHeartbeat._ConsumerHeartbeat__heartbeat_once = heartbeat_once_surviving_connection_errors


def _consume(endpoint, project, topic, sub_id, out_path, session_timeout_ms):
    import signal
    _keep_heartbeats_through_connection_errors()
    cfg = ConsumerConfig(os.environ["CLUSTER_ACCESS_ID"], os.environ["CLUSTER_ACCESS_KEY"], endpoint)
    cfg.session_timeout = int(session_timeout_ms)
    cfg.fetch_limit = 100
    cfg.logging_filename = out_path + ".sdk.log"
    consumer = DatahubConsumer(project, topic, sub_id, cfg)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(out_path, "a") as out:
        while not stop.is_set():
            try:
                rec = consumer.read(timeout=1)
            except Exception as e:  # noqa: BLE001 - as an application: note it, read on
                print("read failed: %r" % (e,), flush=True)
                time.sleep(0.5)
                continue
            if rec is None:
                continue
            v = rec.values
            out.write(json.dumps({"shard": int(rec.record_key.shard_id), "seq": rec.sequence, "p": v[0], "n": v[1],
                                  "put": v[2], "t": time.time()}) + "\n")
            out.flush()
    threading.Thread(target=consumer.close, daemon=True).start()
    time.sleep(1)


def check_consumers(consumers, acked, overlap_s=1.0):
    """Every acknowledged record read by some consumer; no shard read by two consumers at once:
    a consumer that read a shard before and after another consumer's read of it, within
    `overlap_s`, held it at the same time as that other one."""
    failures = []
    reads = []  # (t, consumer, shard, key)
    for ci, c in enumerate(consumers):
        for r in c.records():
            reads.append((r["t"], ci, r["shard"], (r["p"], r["n"])))
    reads.sort()
    seen = {key for _, _, _, key in reads}
    missing = [k for k in acked if k not in seen]
    if missing:
        failures.append("%d acknowledged records never read by the group, e.g. %s" % (len(missing), sorted(missing)[:5]))
    by_shard = {}
    for t, ci, shard, _ in reads:
        by_shard.setdefault(shard, []).append((t, ci))
    overlaps = []
    for shard, rs in by_shard.items():
        for i in range(1, len(rs) - 1):
            (ta, a), (tb, b), (tc, c) = rs[i - 1], rs[i], rs[i + 1]
            if a == c != b and tc - ta < overlap_s:
                overlaps.append((shard, a, b, round(ta, 3), round(tb, 3), round(tc, 3)))
    if overlaps:
        failures.append("%d times a shard was read by two consumers at once, e.g. %s" % (len(overlaps), overlaps[:3]))
    return failures, {"reads": len(reads), "duplicates": len(reads) - len(seen)}


def resume_times(kill_times, reads_by_time, shards, bound_s):
    """For each kill: seconds until every shard had a record put after the kill delivered
    (reads_by_time: [(time delivered, shard, put time in s)]). None when one never was."""
    out = []
    for tk in kill_times:
        first = {}
        for t, shard, put in reads_by_time:
            if put > tk and t >= tk and shard not in first:
                first[shard] = t
        if len(first) < shards:
            out.append(None)
        else:
            out.append(round(max(first.values()) - tk, 2))
    return out


# ---- MySQL sink ------------------------------------------------------------------------------

class MySql:
    """The MariaDB of scripts/services.sh, read with its command-line client."""

    def __init__(self):
        self.host, self.port = env("SLUICE_TEST_MYSQL_HOST"), env("SLUICE_TEST_MYSQL_PORT")
        self.user, self.password = env("SLUICE_TEST_MYSQL_USER"), env("SLUICE_TEST_MYSQL_PASSWORD")
        self.database = env("SLUICE_TEST_MYSQL_DATABASE")

    def run(self, sql):
        out = subprocess.run(["mariadb", "--no-defaults", "-h", self.host, "-P", self.port, "-u", self.user,
                              "-p" + self.password, "-N", "-B", "-r", self.database, "-e", sql],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines()]

    def make_table(self):
        table = "kill_%s" % random.getrandbits(40)
        self.run("CREATE TABLE %s (producer BIGINT, n BIGINT, t BIGINT, shard BIGINT, "
                 "PRIMARY KEY (producer, n))" % table)
        return table


class SinkWatcher(threading.Thread):
    """Polls the sink table every second: per shard, the newest put time that arrived, and when."""

    def __init__(self, db, table):
        super().__init__(daemon=True)
        self.db, self.table = db, table
        self.samples = []  # (time, {shard: max put time ms})
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                rows = self.db.run("SELECT shard, MAX(t) FROM %s GROUP BY shard" % self.table)
                self.samples.append((time.time(), {int(s): int(t) for s, t in rows}))
            except Exception as e:  # noqa: BLE001 - the watcher only measures
                log("sink poll failed: %r" % (e,))
            self.stop_flag.wait(1.0)

    def as_reads(self):
        """The samples as [(time seen, shard, put time s)] for resume_times."""
        out = []
        for t, per_shard in self.samples:
            for shard, put_ms in per_shard.items():
                out.append((t, shard, put_ms / 1000.0))
        return out


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "consume":
    _consume(*sys.argv[2:8])
