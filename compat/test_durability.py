"""Durability: an acknowledged put survives SIGKILL exactly once with its sequence; nothing
unacknowledged is half-visible; SIGTERM is a clean exit (design.md "Storage")."""

import collections
import signal
import threading
import time

import pytest
from datahub.models import BlobRecord, CursorType, FieldType, RecordSchema, ShardState

from util import (all_types_schema, attrs_for, blob_records, create_blob_topic, create_tuple_topic, put,
                  read_all, rows_for, tuple_records, unique_name, values)


def snapshot(srv, project):
    """Everything readable on the server: metadata and, per shard, (sequence, time, data, attributes)."""
    dh = srv.client("json")
    state = {"project_comment": dh.get_project(project).comment, "topics": {}}
    for topic in sorted(dh.list_topic(project).topic_names):
        info = dh.get_topic(project, topic)
        schema = info.record_schema
        shards = dh.list_shard(project, topic).shards
        entry = {
            "comment": info.comment,
            "lifecycle": info.life_cycle,
            "registry": sorted((v["VersionId"], v["RecordSchema"])
                               for v in dh.list_topic_schema(project, topic).record_schema_list) if schema else None,
            "type": info.record_type,
            "schema": schema.to_json_string() if schema else None,
            "shards": [(s.shard_id, s.state, s.begin_hash_key, s.end_hash_key, tuple(s.parent_shard_ids))
                       for s in shards],
            "records": {},
        }
        for s in shards:
            recs = read_all(dh, project, topic, s.shard_id, schema)
            entry["records"][s.shard_id] = [
                (r.sequence, r.system_time, tuple(values(r)) if schema else r.blob_data,
                 tuple(sorted(r.attributes.items())))
                for r in recs]
        state["topics"][topic] = entry
    return state


def snapshot_diff(before, after):
    """Human-readable differences between two snapshots (empty list when equal)."""
    diffs = []
    if before["project_comment"] != after["project_comment"]:
        diffs.append("project comment: %r -> %r" % (before["project_comment"], after["project_comment"]))
    for topic in sorted(set(before["topics"]) | set(after["topics"])):
        b, a = before["topics"].get(topic), after["topics"].get(topic)
        if b is None or a is None:
            diffs.append("topic %s: %s" % (topic, "appeared" if b is None else "disappeared"))
            continue
        for key in sorted(set(b) - {"records"}):
            if b[key] != a.get(key):
                diffs.append("topic %s %s: %r -> %r" % (topic, key, b[key], a.get(key)))
        for shard in sorted(set(b["records"]) | set(a["records"])):
            rb, ra = b["records"].get(shard, []), a["records"].get(shard, [])
            if len(rb) != len(ra):
                diffs.append("topic %s shard %s: %d records -> %d" % (topic, shard, len(rb), len(ra)))
            for i, (x, y) in enumerate(zip(rb, ra)):
                if x != y:
                    diffs.append("topic %s shard %s record %d: %r -> %r" % (topic, shard, i, x, y))
                    break
    return diffs


def write_everything(srv, project):
    """Writes in all three protocols, schema changes, a split; returns the tuple and blob topics."""
    dh = srv.client("json")
    schema = all_types_schema()
    tup = create_tuple_topic(dh, project, schema, shards=2)
    blob = create_blob_topic(dh, project, shards=1)
    for protocol, shard in (("json", "0"), ("pb", "0"), ("batch", "1"), ("batch", "1"), ("pb", "1")):
        client = srv.client(protocol)
        put(client, protocol, project, tup, tuple_records(schema, rows_for(protocol),
                                                          lambda i, p=protocol: attrs_for(p, i)), shard_id=shard)
    # schema changes survive as well: a registered (not current) version, an update, an appended field
    dh.register_topic_schema(project, tup, RecordSchema.from_lists(["x"], [FieldType.BIGINT]))
    dh.update_topic(project, tup, 3, "updated before the crash")
    evo = create_tuple_topic(dh, project, RecordSchema.from_lists(["a"], [FieldType.BIGINT]), prefix="evo")
    dh.append_field(project, evo, "b", FieldType.STRING)
    extended = dh.get_topic(project, evo).record_schema
    put(dh, "json", project, evo, tuple_records(extended, [[1, "after append ✓"]]))
    put(dh, "json", project, blob, blob_records([b"before split %d" % i for i in range(3)]))
    new = dh.split_shard(project, blob, "0").new_shards
    for protocol in ("json", "pb", "batch"):
        put(srv.client(protocol), protocol, project, blob, blob_records([b"child " + protocol.encode()]),
            shard_id=new[0].shard_id)
    return tup, blob


def test_sigkill_keeps_every_acknowledged_record(sluice_factory):
    srv = sluice_factory("kill")
    dh = srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "durable ✓")
    tup, blob = write_everything(srv, project)
    before = snapshot(srv, project)
    assert sum(len(v) for v in before["topics"][tup]["records"].values()) > 0

    rc = srv.restart(signal.SIGKILL)
    assert rc == -signal.SIGKILL

    diffs = snapshot_diff(before, snapshot(srv, project))
    assert not diffs, "changed by SIGKILL + restart:\n" + "\n".join(diffs)

    # sequences continue after the recovered tail; nothing is reused
    last = before["topics"][tup]["records"]["0"][-1][0]
    put(dh, "json", project, tup, tuple_records(all_types_schema(), [rows_for("json")[0]]))
    assert dh.get_cursor(project, tup, "0", CursorType.LATEST).sequence == last + 1
    # the closed shard stays closed and its children keep taking writes
    states = {s.shard_id: s.state for s in dh.list_shard(project, blob).shards}
    assert states["0"] == ShardState.CLOSED

    # a second crash right after a write loses nothing either
    before2 = snapshot(srv, project)
    srv.restart(signal.SIGKILL)
    diffs = snapshot_diff(before2, snapshot(srv, project))
    assert not diffs, "changed by the second SIGKILL + restart:\n" + "\n".join(diffs)


def test_sigterm_is_a_clean_exit(sluice_factory):
    srv = sluice_factory("term")
    dh = srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "")
    write_everything(srv, project)
    before = snapshot(srv, project)
    t0 = time.monotonic()
    rc = srv.stop(signal.SIGTERM)
    assert rc == 0, "sluice serve should exit 0 on SIGTERM (got %s)" % rc
    assert time.monotonic() - t0 < 15
    srv.start()
    diffs = snapshot_diff(before, snapshot(srv, project))
    assert not diffs, "changed by SIGTERM + restart:\n" + "\n".join(diffs)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stop_during_concurrent_writes(sluice_factory, sig):
    """Writers in every protocol are cut off by SIGKILL (or SIGTERM, which must exit 0). After restart
    every acknowledged put is there exactly once, an unacknowledged put is all there or not at all,
    and sequences are dense."""
    srv = sluice_factory("race")
    dh = srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "")
    topic = create_blob_topic(dh, project, shards=2)

    lock = threading.Lock()
    acked, unacked = [], []
    stop = threading.Event()

    def writer(protocol, shard):
        client = srv.client(protocol, retry_times=0)
        for n in range(100000):
            if stop.is_set():
                return
            payloads = [("%s/%s/%d/%d" % (protocol, shard, n, i)).encode() for i in range(5)]
            recs = blob_records(payloads)
            try:
                if protocol == "json":
                    for r in recs:
                        r.shard_id = shard
                    result = client.put_records(project, topic, recs)
                    assert result.failed_record_count == 0
                else:
                    client.put_records_by_shard(project, topic, shard, recs)
            except Exception:  # the server went away mid-request
                with lock:
                    unacked.append(payloads)
                return
            with lock:
                acked.append(payloads)

    threads = [threading.Thread(target=writer, args=a, daemon=True)
               for a in (("json", "0"), ("pb", "0"), ("batch", "1"), ("pb", "1"))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 60:
                break
        time.sleep(0.01)
    rc = srv.stop(sig)
    stop.set()
    assert rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL), rc
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 20, "writers made too little progress before the kill (%d puts)" % len(acked)

    srv.start()
    stored = collections.Counter()
    for shard in ("0", "1"):
        recs = read_all(dh, project, topic, shard)
        for r in recs:
            stored[r.blob_data] += 1
        seqs = sorted({r.sequence for r in recs})
        assert seqs == list(range(len(seqs))), "shard %s: sequences not dense from 0" % shard
    dupes = [p for p, c in stored.items() if c > 1]
    assert not dupes, "records stored more than once: %r" % dupes[:5]
    lost = [p for put_ in acked for p in put_ if stored[p] != 1]
    assert not lost, "%d acknowledged records lost, e.g. %r" % (len(lost), lost[:5])
    for put_ in unacked:
        present = [stored[p] for p in put_]
        assert present in ([0] * len(put_), [1] * len(put_)), "half-visible put: %r" % list(zip(put_, present))
    # the log takes writes again, continuing the sequences
    dh.put_records(project, topic, [_with_shard(BlobRecord(blob_data=b"after restart"), "0")])
    assert read_all(dh, project, topic, "0")[-1].blob_data == b"after restart"


def _with_shard(rec, shard):
    rec.shard_id = shard
    return rec
