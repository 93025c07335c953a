"""Fault tests of three Sluice nodes on the HA bed (issue 14, Tests 2-4), run by
`scripts/test.sh cluster` with the compat venv's python, against the bed and nodes that
`scripts/cluster.sh up` + `nodes-up` started (environment from `scripts/cluster.sh env`, MySQL from
scripts/services.sh). Every put goes through haproxy (round robin over the nodes).

  kill      16 shards, 8 producers, a MySQL sink connector and 3 group consumers; kill -9 a random
            node every 20 s and start it again; CLUSTER_KILL_MINUTES long (default 2). Asserts: no
            acknowledged record lost, every shard's sequences dense from 0, system time never
            backwards, the group read every record and never had a shard in two consumers at
            once, the sink's rows equal the records, and the connector and the group resume
            (a record put after the kill reaches every shard's reader) within 30 s of each kill.
  zombie    freeze the node running the connector (kill -STOP 15 s, then -CONT) while producers
            write: the work moves, the frozen node's late checkpoint writes are fenced (the
            connector's checkpoints, polled twice a second, never go backwards), nothing lost.
  failover  patronictl switchover, then kill -9 of the PostgreSQL primary, while 8 producers put
            through the nodes: nothing lost, no sequence reused, writes pause at most 60 s.

CLUSTER_KILL_PRODUCERS_ONLY=1 leaves the connector and the group out of the kill test (bring-up
of the bed only; scripts/test.sh never sets it).

Prints `FIGURE name=value` lines (resume and pause times). Exit status 0 only when every check
passed. usage: cluster_kill.py [kill|zombie|failover]... (default: all three)
"""

import os
import random
import sys
import threading
import time

import cluster_load as cl
from datahub.models import ConnectorType, DatabaseConnectorConfig

RESUME_BOUND_S = 30.0  # work and group coordination back on the survivors (CI bound)
PAUSE_BOUND_S = 60.0  # writes back after an engine failover (CI bound)
FIGURES = []


def figure(name, value):
    FIGURES.append((name, value))
    print("FIGURE %s=%s" % (name, value), flush=True)


def wait_until(what, predicate, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def wait_while_progressing(what, done, progress, idle, cap, interval=2.0):
    """Waits until `done()`, as long as `progress()` (a growing count) grew within the last
    `idle` seconds, and at most `cap` seconds in all. pydatahub's DatahubConsumer drains a
    backlog slowly once its other shards are empty (each empty shard's read waits 2 s, one
    record per round), so a fixed bound would fail a group that is still reading."""
    start = last_move = time.monotonic()
    seen = progress()
    while not done():
        now = time.monotonic()
        if now - last_move > idle or now - start > cap:
            raise AssertionError("gave up after %.0f s (%.0f s without progress) waiting for %s"
                                 % (now - start, now - last_move, what))
        time.sleep(interval)
        count = progress()
        if count > seen:
            seen, last_move = count, time.monotonic()


def sink_connector(bed, project, topic, db, table):
    dh = bed.client("json")
    cfg = DatabaseConnectorConfig(db.host, db.port, db.database, db.user, db.password, table, False)
    return cl.retry("create connector", lambda: dh.create_connector(
        project, topic, ConnectorType.SINK_MYSQL, ["producer", "n", "t", "shard"], cfg, -1).connector_id)


def sink_keys(db, table):
    return {(int(p), int(n)) for p, n in db.run("SELECT producer, n FROM %s" % table)}


def stored_keys(stored):
    return {(v[0], v[1]) for recs in stored.values() for _, _, v in recs}


def wait_sink(db, table, want, timeout=180):
    wait_until("the sink to hold all %d records" % len(want), lambda: sink_keys(db, table) >= want, timeout, 2)
    got = sink_keys(db, table)
    assert got == want, "sink rows != records: %d missing, %d extra" % (len(want - got), len(got - want))


def scenario_kill(bed, minutes, with_work=True):
    shards = 16
    project, topic = cl.make_topic(bed, shards)
    dh = bed.client("json")
    work = os.path.join(bed.dir, "kill-%d" % int(time.time()))
    os.makedirs(work, exist_ok=True)
    consumers, watcher = [], None
    if with_work:
        sub_id = cl.retry("create subscription", lambda: dh.create_subscription(project, topic, "kill test").sub_id)
        db = cl.MySql()
        table = db.make_table()
        sink_connector(bed, project, topic, db, table)
        watcher = cl.SinkWatcher(db, table)
        watcher.start()
        consumers = [cl.Consumer(bed, project, topic, sub_id, os.path.join(work, "consumer%d.jsonl" % i))
                     for i in range(3)]
    producers = cl.Producers(bed, project, topic, shards, count=8, per_put=10, rate=10.0)
    producers.start()
    cl.log("kill test: %s/%s, %d shards, %.1f min, work dir %s" % (project, topic, shards, minutes, work))
    time.sleep(15)  # the group forms, the connector starts
    kills, restarts = [], []
    end = time.monotonic() + minutes * 60
    try:
        while time.monotonic() < end - 20:
            node = random.randint(1, 3)
            t = time.time()
            bed.run("kill-node", str(node))
            kills.append((t, node))
            bed.run("start-node", str(node))
            restarts.append(time.time() - t)
            cl.log("killed s%d, back after %.1f s" % (node, restarts[-1]))
            time.sleep(max(0.0, 20 - (time.time() - t)))
        time.sleep(max(0.0, end - time.monotonic()))
    finally:
        producers.stop()
    cl.log("producers stopped: %d acknowledged, %d failed puts" % (len(producers.acked), producers.failures))
    stored = cl.read_back(bed, project, topic, shards)
    failures, stats = cl.check_log(stored, producers.acked)
    kill_times = [t for t, _ in kills]
    write_gaps = [round(producers.write_gaps(t, t + 20), 2) for t in kill_times]
    figure("kill.kills", len(kills))
    figure("kill.records_acked", stats["acked"])
    figure("kill.records_stored", stats["stored"])
    figure("kill.failed_puts", producers.failures)
    figure("kill.write_gap_s", write_gaps)
    figure("kill.node_restart_s", [round(x, 1) for x in restarts])
    if not kills:
        failures.append("no node was killed (run longer than 20 s)")
    if not with_work:
        return failures
    want = stored_keys(stored)
    try:
        wait_while_progressing("the group to read every record",
                               lambda: {(r["p"], r["n"]) for c in consumers for r in c.records()} >= want,
                               lambda: sum(len(c.records()) for c in consumers), idle=60, cap=900)
    except AssertionError as e:
        failures.append(str(e))
    for c in consumers:
        c.stop()
    try:
        wait_sink(db, table, want)
    except AssertionError as e:
        failures.append(str(e))
    watcher.stop_flag.set()
    f2, cstats = cl.check_consumers(consumers, producers.acked)
    failures += f2
    reads = sorted((r["t"], r["shard"], r["put"] / 1000.0) for c in consumers for r in c.records())
    group_resume = cl.resume_times(kill_times, reads, shards, RESUME_BOUND_S)
    sink_resume = cl.resume_times(kill_times, watcher.as_reads(), shards, RESUME_BOUND_S)
    figure("kill.group_duplicates", cstats["duplicates"])
    figure("kill.heartbeat_connection_errors", sum(c.log_lines_with("heartbeat connection error") for c in consumers))
    figure("kill.consumer_session_timeouts", sum(c.log_lines_with("ConsumerHeartbeat timeout") for c in consumers))
    figure("kill.group_resume_s", group_resume)
    figure("kill.connector_resume_s", sink_resume)
    for what, times in (("group", group_resume), ("connector", sink_resume)):
        late = [(i, x) for i, x in enumerate(times) if x is None or x > RESUME_BOUND_S]
        if late:
            failures.append("%s did not resume within %.0f s after kills %s" % (what, RESUME_BOUND_S, late))
    return failures


def connector_owner(dh, project, topic, cid, ports):
    """The node (1..3) running the connector's shards, by WorkerAddress (host:port)."""
    status = dh.get_connector_shard_status(project, topic, cid)
    addrs = {s.worker_addr for s in status.shard_status_infos.values()}
    owners = {ports[a.rsplit(":", 1)[-1]] for a in addrs if a and a.rsplit(":", 1)[-1] in ports}
    return owners


class CheckpointWatch(threading.Thread):
    """Polls the connector's per-shard checkpoints (CurrentSequence) and workers twice a second
    through the balancer; any value lower than one seen before is a checkpoint that went
    backwards. `owners`: (time, {worker address}) per poll."""

    def __init__(self, bed, project, topic, cid):
        super().__init__(daemon=True)
        # a short timeout: a poll that haproxy sent to the frozen node must not block the watch
        self.dh = bed.client("json", read_timeout=2)
        self.args = (project, topic, cid)
        self.high = {}
        self.backwards = []
        self.owners = []
        self.polls = 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                status = self.dh.get_connector_shard_status(*self.args)
                for shard, s in status.shard_status_infos.items():
                    seq = s.current_sequence
                    if seq < self.high.get(shard, -1):
                        self.backwards.append((shard, self.high[shard], seq, time.time()))
                    self.high[shard] = max(seq, self.high.get(shard, -1))
                self.owners.append((time.time(), {s.worker_addr for s in status.shard_status_infos.values()}))
                self.polls += 1
            except Exception:  # noqa: BLE001 - a poll through a node that is down
                pass
            self.stop_flag.wait(0.5)


def scenario_zombie(bed):
    shards = 4
    project, topic = cl.make_topic(bed, shards)
    dh = bed.client("json")
    db = cl.MySql()
    table = db.make_table()
    cid = sink_connector(bed, project, topic, db, table)
    ports = {url.rsplit(":", 1)[-1]: i + 1 for i, url in enumerate(os.environ["SLUICE_TEST_CLUSTER_NODES"].split(","))}
    producers = cl.Producers(bed, project, topic, shards, count=4, per_put=10, rate=10.0)
    producers.start()
    watch = CheckpointWatch(bed, project, topic, cid)
    watch.start()
    failures = []
    try:
        owners = set()

        def owned():
            owners.clear()
            owners.update(connector_owner(dh, project, topic, cid, ports))
            return len(owners) >= 1 and watch.high and min(watch.high.values()) >= 0

        wait_until("the connector to run and checkpoint", lambda: cl.retry("status", owned), 60)
        victim = sorted(owners)[0]
        victim_addr = "127.0.0.1:%s" % [p for p, i in ports.items() if i == victim][0]
        victim_log = os.path.join(bed.dir, "log", "sluice-s%d.log" % victim)
        log_from = os.path.getsize(victim_log)
        cl.log("zombie test: connector %s runs on %s; freezing s%d for 15 s" % (cid, sorted(owners), victim))
        t0 = time.time()
        bed.run("freeze-node", str(victim), "15", timeout=60)
        t1 = time.time()
        cl.log("s%d continued after %.1f s" % (victim, t1 - t0))
        time.sleep(20)
        moved = [(round(t - t0, 1), sorted(a)) for t, a in watch.owners if t0 < t < t1 and victim_addr not in a and all(a)]
        figure("zombie.frozen_node", "s%d" % victim)
        figure("zombie.moved_after_s", moved[0][0] if moved else None)
        if not moved:
            failures.append("the connector never ran on another node while s%d was frozen" % victim)
        with open(victim_log, "rb") as f:
            f.seek(log_from)
            late = [line for line in f.read().decode("utf-8", "replace").splitlines()
                    if "fenced" in line and cid in line]
        # How many of the frozen node's late checkpoint writes the fence refused (it may also have
        # noticed the lost lease first and written nothing: then no checkpoint can go back either).
        figure("zombie.fenced_late_writes", len(late))
    finally:
        producers.stop()
    stored = cl.read_back(bed, project, topic, shards)
    f, stats = cl.check_log(stored, producers.acked)
    failures += f
    try:
        wait_sink(db, table, stored_keys(stored))
    except AssertionError as e:
        failures.append(str(e))
    time.sleep(2)
    watch.stop_flag.set()
    watch.join(timeout=10)
    figure("zombie.checkpoint_polls", watch.polls)
    figure("zombie.records_acked", stats["acked"])
    if watch.backwards:
        failures.append("connector checkpoints went backwards %d times, e.g. %s"
                        % (len(watch.backwards), watch.backwards[:3]))
    if watch.polls < 20:
        failures.append("only %d checkpoint polls succeeded" % watch.polls)
    return failures


def scenario_failover(bed):
    shards = 4
    project, topic = cl.make_topic(bed, shards)
    producers = cl.Producers(bed, project, topic, shards, count=8, per_put=10, rate=10.0)
    producers.start()
    failures = []
    try:
        time.sleep(5)
        t = time.time()
        old = bed.run("switchover", timeout=120).splitlines()[-1]
        cl.log("switchover: new primary %s" % old)
        bed.run("wait-healthy", "120", timeout=150)
        time.sleep(5)
        switch_pause = producers.write_gaps(t, time.time())
        t = time.time()
        victim = bed.run("kill-primary").splitlines()[-1]
        cl.log("killed primary %s" % victim)
        wait_until("writes after the kill", lambda: any(x > t + 1 for x in sum(producers.ok_times, [])), 120)
        time.sleep(5)
        kill_pause = producers.write_gaps(t, time.time())
        bed.run("restart", victim, timeout=60)
        bed.run("wait-healthy", "180", timeout=200)
    finally:
        producers.stop()
    stored = cl.read_back(bed, project, topic, shards)
    f, stats = cl.check_log(stored, producers.acked)
    failures += f
    figure("failover.switchover_write_pause_s", round(switch_pause, 2))
    figure("failover.kill_primary_write_pause_s", round(kill_pause, 2))
    figure("failover.records_acked", stats["acked"])
    figure("failover.unacked_but_stored", stats["unacked_stored"])
    for what, pause in (("switchover", switch_pause), ("kill of the primary", kill_pause)):
        if pause > PAUSE_BOUND_S:
            failures.append("writes paused %.1f s on a %s (bound %.0f s)" % (pause, what, PAUSE_BOUND_S))
    return failures


def main(argv):
    names = argv or ["kill", "zombie", "failover"]
    bed = cl.Bed()
    minutes = float(os.environ.get("CLUSTER_KILL_MINUTES", "2"))
    all_failures = []
    for name in names:
        cl.log("==== %s" % name)
        t = time.time()
        if name == "kill":
            failures = scenario_kill(bed, minutes, os.environ.get("CLUSTER_KILL_PRODUCERS_ONLY") != "1")
        elif name == "zombie":
            failures = scenario_zombie(bed)
        elif name == "failover":
            failures = scenario_failover(bed)
        else:
            raise SystemExit("unknown scenario %r (kill, zombie, failover)" % name)
        cl.log("==== %s: %s in %.0f s" % (name, "FAILED" if failures else "ok", time.time() - t))
        for f in failures:
            print("FAIL %s: %s" % (name, f), flush=True)
        all_failures += failures
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
