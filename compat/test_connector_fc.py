"""SINK_FC end to end against compat/fc_receiver.py (a stand-in for Function Compute 3.0's
InvokeFunction that checks every signature with the vendor's SDK code and records payloads):
- the receiver itself accepts what the official FC 3.0 SDK sends and refuses a wrong key;
- every record of every field type arrives once, with its fields by name, shard, sequence,
  system time and attributes, signed, at /2023-03-30/functions/{Service}${Function}/invocations;
- 503 and 429 answers hang the shards with the reason, and everything arrives once they stop;
- a function error (HTTP 200 with X-Fc-Error-Type) is invoked again; one that persists is
  bisected down to the record, which is discarded and counted;
- AuthMode sts is stored and its shards hang saying STS is not available self-hosted.
The compliance suite (test_sink_compliance.py, adapter `fc`) adds SIGKILL, outage, stop/start,
offset reset, append field and split/merge."""

import io
import time
from decimal import Decimal

import pytest
from alibabacloud_fc20230330 import models as fc_models
from alibabacloud_fc20230330.client import Client as FcClient
from alibabacloud_tea_openapi.utils_models import Config as FcSdkConfig
from datahub.models import AuthMode, ConnectorType, FieldType, RecordSchema, TupleRecord
from datahub.models.connector import FcConnectorConfig

from fc_receiver import BAD_NOTE, FcReceiver
from util import ALL_TYPES, ROWS, all_types_schema, put, unique_name, wait_for

SERVER_CONFIG = {"connector_batch_records": 5, "connector_batch_age_ms": 20}


@pytest.fixture
def receiver():
    rx = FcReceiver()
    yield rx
    rx.close()


@pytest.fixture
def source(sluice_factory):
    """A private server (batches of 5) and a project."""
    srv = sluice_factory("fc-source", config=SERVER_CONFIG)
    dh = srv.client()
    project = unique_name("fc")
    dh.create_project(project, "SINK_FC tests")
    return dh, project


def make_topic(dh, project, schema, shards):
    topic = unique_name("t")
    dh.create_tuple_topic(project, topic, shards, 1, schema, "SINK_FC source")
    dh.wait_shards_ready(project, topic, 10)
    return topic


def fc_config(rx, auth_mode=AuthMode.AK, service="svc", func="fn"):
    return FcConnectorConfig(rx.endpoint, service, func, auth_mode, rx.access_id, rx.access_key)


def statuses(dh, project, topic, cid):
    return dh.get_connector_shard_status(project, topic, cid).shard_status_infos


SIMPLE = RecordSchema.from_lists(["id", "note"], [FieldType.BIGINT, FieldType.STRING])


def put_ids(dh, project, topic, shard, ids, note=lambda i: "n%d" % i):
    put(dh, "json", project, topic, [TupleRecord(schema=SIMPLE, values=[i, note(i)]) for i in ids], str(shard))


def ids_of(rx):
    return sorted(r["fields"]["id"] for _, _, r in rx.records())


def test_the_receiver_checks_signatures_with_the_official_sdk(receiver):
    def sdk(key):
        return FcClient(FcSdkConfig(access_key_id=receiver.access_id, access_key_secret=key,
                                    endpoint="%s:%d" % (receiver.host, receiver.port), protocol="http"))

    body = b'{"records": [{"fields": {"id": 1}}]}'
    resp = sdk(receiver.access_key).invoke_function("svc$fn", fc_models.InvokeFunctionRequest(body=io.BytesIO(body)))
    assert resp.status_code == 200
    assert receiver.signature_failures == []
    assert receiver.records() == [(1, "svc$fn", {"fields": {"id": 1}})]
    with pytest.raises(Exception, match="SignatureNotMatch"):
        sdk("not-the-key").invoke_function("svc$fn", fc_models.InvokeFunctionRequest(body=io.BytesIO(body)))
    assert len(receiver.signature_failures) == 1 and "signature mismatch" in receiver.signature_failures[0]
    assert len(receiver.records()) == 1


def test_every_record_arrives_signed_with_its_fields_and_origin(source, receiver):
    dh, project = source
    shards = 2
    topic = make_topic(dh, project, all_types_schema(), shards)
    sent = {}
    for shard in range(shards):
        recs = []
        for j, row in enumerate(ROWS):
            rec = TupleRecord(schema=all_types_schema(), values=list(row))
            rec.put_attribute("shard", str(shard))
            rec.put_attribute("j", str(j))
            recs.append(rec)
        put(dh, "json", project, topic, recs, str(shard))
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, [n for n, _ in ALL_TYPES],
                              fc_config(receiver)).connector_id
    wait_for(lambda: len(receiver.records()) >= shards * len(ROWS) or len(receiver.records()),
             "every record at the receiver")
    time.sleep(0.5)
    got = receiver.records()
    assert receiver.signature_failures == []
    assert len(got) == shards * len(ROWS), "duplicates or extra records: %d" % len(got)
    assert {f for _, f, _ in got} == {"svc$fn"}
    assert all(c["function"] == "svc$fn" for c in receiver.invocations)
    seqs = {}
    for _, _, rec in got:
        shard, j = rec["attributes"]["shard"], int(rec["attributes"]["j"])
        assert rec["attributes"] == {"shard": shard, "j": str(j)}
        assert rec["shardId"] == shard
        assert abs(rec["systemTime"] - time.time() * 1000) < 300_000, rec["systemTime"]
        seqs.setdefault(shard, []).append(rec["sequence"])
        want = ROWS[j]
        fields = rec["fields"]
        assert set(fields) == {n for n, _ in ALL_TYPES}
        for (name, ftype), value in zip(ALL_TYPES, want):
            if ftype == FieldType.DECIMAL:
                assert Decimal(fields[name]) == value, name
            else:
                assert fields[name] == value, (name, fields[name], value)
        sent[(shard, j)] = True
    assert len(sent) == shards * len(ROWS)
    for shard, s in seqs.items():
        assert s == list(range(len(ROWS))), "shard %s sequences %r" % (shard, s)
    # several invocations of at most a batch (5 records) each
    assert all(c["count"] <= 5 for c in receiver.invocations)
    assert all(v.state.value == "CONTEXT_EXECUTING" for v in statuses(dh, project, topic, cid).values())


@pytest.mark.parametrize("status", [503, 429])
def test_throttling_and_server_errors_hang_then_recover(source, receiver, status):
    dh, project = source
    topic = make_topic(dh, project, SIMPLE, 2)
    receiver.fail_with(status)
    put_ids(dh, project, topic, 0, range(0, 12))
    put_ids(dh, project, topic, 1, range(100, 112))
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, ["id", "note"], fc_config(receiver)).connector_id
    seen = {}

    def hanging():
        for k, v in statuses(dh, project, topic, cid).items():
            if v.state.value == "CONTEXT_HANG" and "HTTP %d" % status in (v.last_error_message or ""):
                seen[k] = v.last_error_message
        return len(seen) == 2 or seen

    wait_for(hanging, "both shards CONTEXT_HANG with HTTP %d" % status)
    assert str(receiver.port) in next(iter(seen.values())), seen
    assert receiver.records() == []
    failed_calls = len(receiver.invocations)
    assert failed_calls >= 2
    receiver.fail_with(None)
    want = list(range(0, 12)) + list(range(100, 112))
    wait_for(lambda: ids_of(receiver) == want or ids_of(receiver), "every record after the failures stop")
    wait_for(lambda: all(v.state.value == "CONTEXT_EXECUTING" for v in statuses(dh, project, topic, cid).values())
             or statuses(dh, project, topic, cid), "CONTEXT_EXECUTING again")
    assert all(v.discard_count == 0 for v in statuses(dh, project, topic, cid).values())
    assert receiver.signature_failures == []


def test_a_passing_function_error_is_retried_without_loss(source, receiver):
    dh, project = source
    topic = make_topic(dh, project, SIMPLE, 1)
    receiver.function_errors(2)  # fewer than the sink's attempts per batch (3)
    put_ids(dh, project, topic, 0, range(5))
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, ["id", "note"], fc_config(receiver)).connector_id
    wait_for(lambda: ids_of(receiver) == list(range(5)) or ids_of(receiver), "the batch after two function errors")
    calls = receiver.invocations
    assert [c["error"] for c in calls[:3]] == ["UnhandledInvocationError", "UnhandledInvocationError", None], calls
    assert calls[0]["count"] == calls[2]["count"], "the same batch is invoked again"
    assert statuses(dh, project, topic, cid)["0"].discard_count == 0


def test_a_record_the_function_refuses_is_isolated_and_counted(source, receiver):
    dh, project = source
    topic = make_topic(dh, project, SIMPLE, 1)
    put_ids(dh, project, topic, 0, range(5), note=lambda i: BAD_NOTE if i == 3 else "n%d" % i)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, ["id", "note"], fc_config(receiver)).connector_id
    wait_for(lambda: statuses(dh, project, topic, cid)["0"].discard_count == 1 or
             (statuses(dh, project, topic, cid)["0"].discard_count, ids_of(receiver)), "one discarded record")
    wait_for(lambda: ids_of(receiver) == [0, 1, 2, 4] or ids_of(receiver), "the other records")
    info = statuses(dh, project, topic, cid)["0"]
    assert "X-Fc-Error-Type: UnhandledInvocationError" in info.last_error_message, info.last_error_message
    alone = [c for c in receiver.invocations if c["count"] == 1 and c["error"]]
    assert len(alone) == 3, "the refused record alone is invoked 3 times before it is discarded: %r" % alone
    assert receiver.signature_failures == []


def test_sts_is_stored_and_hangs_saying_it_is_not_available(source, receiver):
    dh, project = source
    topic = make_topic(dh, project, SIMPLE, 1)
    put_ids(dh, project, topic, 0, range(3))
    cfg = FcConnectorConfig(receiver.endpoint, "svc", "fn", AuthMode.STS)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_FC, ["id", "note"], cfg).connector_id
    got = dh.get_connector(project, topic, cid)
    assert got.config.auth_mode == AuthMode.STS
    assert got.config.service == "svc" and got.config.func == "fn"

    def hanging():
        info = statuses(dh, project, topic, cid)["0"]
        return (info.state.value == "CONTEXT_HANG" and "STS is not available self-hosted" in
                (info.last_error_message or "")) or (info.state.value, info.last_error_message)

    wait_for(hanging, "CONTEXT_HANG saying STS is not available")
    assert receiver.invocations == []
