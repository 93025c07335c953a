"""Helpers for the subscription, offset and consumer-group tests: topics with a subscription,
producing with DatahubProducer, and group consumers run as child processes (so that one can be
killed with SIGKILL mid-way, the way a consumer process dies).

A consumer child (this file run as a script) reads with DatahubConsumer and appends one JSON line
per record to its output file: {"shard", "seq", "key", "n", "t"}; it exits after `idle` seconds
without records (30 s more before the first one), or when killed. A read() that raises is logged
and retried, and the child then exits with READ_FAILED instead of 0."""

import json
import os
import subprocess
import sys
import threading
import time

from datahub.client import ConsumerConfig, DatahubConsumer, DatahubProducer, ProducerConfig
from datahub.models import BlobRecord, FieldType, RecordSchema, TupleRecord

from util import ACCESS_ID, ACCESS_KEY, create_tuple_topic

SCHEMA = RecordSchema.from_lists(["key", "n"], [FieldType.STRING, FieldType.BIGINT])


def keyed_topic(dh, project, shards=4):
    """A tuple topic (key STRING, n BIGINT) and a subscription of it."""
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=shards)
    sub_id = dh.create_subscription(project, topic, "consumer group test").sub_id
    return topic, sub_id


def producer(endpoint, project, topic):
    cfg = ProducerConfig(ACCESS_ID, ACCESS_KEY, endpoint)
    cfg.logging_filename = os.devnull
    return DatahubProducer(project, topic, cfg)


def produce(endpoint, project, topic, n, keys=8, start=0, batch=50):
    """Writes records n = start..start+n-1 (key = "k<n % keys>") round-robin over the ACTIVE
    shards with the high-level producer; returns how many were written."""
    p = producer(endpoint, project, topic)
    try:
        for lo in range(start, start + n, batch):
            recs = [TupleRecord(schema=SCHEMA, values=["k%d" % (i % keys), i])
                    for i in range(lo, min(lo + batch, start + n))]
            p.write(recs)  # synchronous: the records are stored when it returns
    finally:
        # DatahubProducer.close() waits ~10 s for its idle worker threads: do it aside
        threading.Thread(target=p.close, daemon=True).start()
    return n


def consumer_config(endpoint, session_timeout=6000, fetch_limit=100):
    cfg = ConsumerConfig(ACCESS_ID, ACCESS_KEY, endpoint)
    cfg.session_timeout = session_timeout
    cfg.fetch_limit = fetch_limit
    cfg.logging_filename = os.devnull
    return cfg


class ConsumerProc:
    """A DatahubConsumer in a child process."""

    def __init__(self, endpoint, project, topic, sub_id, out_path, idle=15.0, session_timeout=6000,
                 delay=0.0, log_path=None):
        self.out_path = str(out_path)
        args = [sys.executable, os.path.abspath(__file__), endpoint, project, topic, sub_id, self.out_path,
                str(idle), str(session_timeout), str(delay)]
        self.log = open(log_path or (self.out_path + ".log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=os.path.dirname(os.path.abspath(__file__)), start_new_session=True)

    def records(self):
        try:
            with open(self.out_path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("consumer %s did not finish within %ss" % (self.out_path, timeout))
        self.log.close()
        return rc


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


# The child's exit status when read() raised at least once (it reads on after each failure).
READ_FAILED = 4


def _child(endpoint, project, topic, sub_id, out_path, idle, session_timeout, delay):
    cfg = consumer_config(endpoint, int(session_timeout))
    consumer = DatahubConsumer(project, topic, sub_id, cfg)
    # the first heartbeat comes 5 s after the join: allow a longer wait for the first record
    last = time.monotonic() + 30
    failed_reads = 0
    with open(out_path, "a") as out:
        try:
            while time.monotonic() - last < idle:
                try:
                    rec = consumer.read(timeout=1)
                except Exception as e:  # as an application would: note it and read on
                    failed_reads += 1
                    print("read failed: %r" % (e,), flush=True)
                    time.sleep(0.5)
                    continue
                if rec is None:
                    continue
                last = time.monotonic()
                out.write(json.dumps({"shard": rec.record_key.shard_id, "seq": rec.sequence, "key": rec.values[0],
                                      "n": rec.values[1], "t": time.time()}) + "\n")
                out.flush()
                if delay:
                    time.sleep(delay)
        finally:
            consumer.close()
    return READ_FAILED if failed_reads else 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]),
                    sys.argv[7], float(sys.argv[8])))
