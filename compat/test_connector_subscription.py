"""Connectors backed by subscriptions (issue 8 item 7; docs/sdk-wire.md "Connectors backed by
subscriptions").

On the service every connector has its own subscription: GetConnector names it in
`ExtraInfo.SubscriptionId` (pydatahub `GetConnectorResult.sub_id`, datahub/models/results.py:1149;
Go `GetConnectorResult.ExtraConfig`, datahub/resultmodel.go:798; Java GetConnectorResultDeserializer
.java:48-52), and its offsets ARE the connector's checkpoints: the Java SDK's service tests assert
that a connector's CurrentSequence equals its subscription's offset Sequence (oldsdk SinkOdpsTest
.java:386-387, 1516-1526) and that deleting the connector deletes the subscription
(SinkOdpsTest.java:390-392). Here: sub_id present, offsets agree both ways, offset changes through
the subscription API are refused with InvalidOperation while the connector runs and are what it
resumes from when made while it is stopped, the subscription cannot be deleted directly, it goes
with its connector or topic, and all of it survives a restart.
"""

import time

import pytest
from datahub.exceptions import DatahubException, InvalidOperationException
from datahub.models import (AuthMode, ConnectorOffset, ConnectorState, ConnectorType, CursorType, FieldType,
                            OffsetWithSession, OffsetWithVersion, RecordSchema, TupleRecord)
from datahub.models.connector import DataHubConnectorConfig

from util import ACCESS_ID, ACCESS_KEY, create_tuple_topic, unique_name

SCHEMA = RecordSchema.from_lists(["k", "v"], [FieldType.BIGINT, FieldType.STRING])
SHARDS = 2
PER_SHARD = 5


def put(dh, project, topic, tag):
    for shard in range(SHARDS):
        recs = []
        for i in range(PER_SHARD):
            r = TupleRecord(schema=SCHEMA, values=[i, "%s-%d-%d" % (tag, shard, i)])
            r.shard_id = str(shard)
            recs.append(r)
        assert dh.put_records(project, topic, recs).failed_record_count == 0


def count(client, project, topic):
    n = 0
    for shard in range(SHARDS):
        cursor = client.get_cursor(project, topic, str(shard), CursorType.OLDEST).cursor
        while True:
            result = client.get_tuple_records(project, topic, str(shard), SCHEMA, cursor, 100)
            n += result.record_count
            if result.record_count == 0 or result.next_cursor == cursor:
                break
            cursor = result.next_cursor
    return n


def wait_count(client, project, topic, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = count(client, project, topic)
        if got >= n:
            time.sleep(0.5)  # nothing more may arrive
            return count(client, project, topic)
        time.sleep(0.1)
    raise AssertionError("the sink holds %d records, want %d" % (got, n))


@pytest.fixture
def sink(sluice_factory):
    """A second Sluice with a topic the connectors copy into."""
    srv = sluice_factory("sink")
    client = srv.client()
    project = unique_name("dst")
    client.create_project(project, "sink")
    topic = create_tuple_topic(client, project, schema=SCHEMA, shards=SHARDS)
    return srv, client, project, topic


def create(dh, project, topic, srv, tproject, ttopic):
    config = DataHubConnectorConfig(srv.endpoint, tproject, ttopic, AuthMode.AK, ACCESS_ID, ACCESS_KEY)
    return dh.create_connector(project, topic, ConnectorType.SINK_DATAHUB, ["k", "v"], config).connector_id


def get_sub(raw, project, topic, sub_id):
    """GET the subscription raw (pydatahub's get_subscription is broken client-side, §6.7)."""
    return raw.get("/projects/%s/topics/%s/subscriptions/%s" % (project, topic, sub_id))


def sub_sequences(dh, project, topic, sub_id):
    offsets = dh.get_subscription_offset(project, topic, sub_id, [str(s) for s in range(SHARDS)]).offsets
    return {shard: o.sequence for shard, o in offsets.items()}


def connector_sequences(dh, project, topic, cid):
    contexts = dh.get_connector(project, topic, cid).shard_contexts
    return {c.shard_id: c.current_sequence for c in contexts}


def status_sequences(dh, project, topic, cid):
    infos = dh.get_connector_shard_status(project, topic, cid).shard_status_infos
    return {shard: e.current_sequence for shard, e in infos.items()}


def test_get_connector_names_its_own_subscription(dh, raw, project, sink):
    srv, _, tproject, ttopic = sink
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=SHARDS)
    cid = create(dh, project, topic, srv, tproject, ttopic)
    got = dh.get_connector(project, topic, cid)
    assert got.sub_id, got.to_json()
    assert got.to_json()["ExtraInfo"]["SubscriptionId"] == got.sub_id
    # every ExtraInfo value is a string (the Go SDK decodes it as map[string]string)
    assert all(isinstance(v, str) for v in got.to_json()["ExtraInfo"].values())
    sub = get_sub(raw, project, topic, got.sub_id)
    assert sub.status == 200 and sub.json()["Comment"] == "connector %s" % cid
    listed = dh.list_subscription(project, topic, "", 1, 50).subscriptions
    assert [s.sub_id for s in listed] == [got.sub_id]
    # a second connector gets a subscription of its own
    other = create(dh, project, topic, srv, tproject, ttopic)
    assert dh.get_connector(project, topic, other).sub_id not in ("", got.sub_id)


def test_offsets_agree_both_ways_and_a_stopped_connector_resumes_from_them(dh, project, sink):
    srv, tclient, tproject, ttopic = sink
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=SHARDS)
    cid = create(dh, project, topic, srv, tproject, ttopic)
    sub_id = dh.get_connector(project, topic, cid).sub_id
    put(dh, project, topic, "a")
    assert wait_count(tclient, tproject, ttopic, SHARDS * PER_SHARD) == SHARDS * PER_SHARD
    deadline = time.monotonic() + 10
    last = PER_SHARD - 1  # CurrentSequence: the last record delivered
    while connector_sequences(dh, project, topic, cid) != {"0": last, "1": last}:
        assert time.monotonic() < deadline, connector_sequences(dh, project, topic, cid)
        time.sleep(0.1)
    # the subscription's Sequence is the connector's CurrentSequence (the last record delivered)
    assert sub_sequences(dh, project, topic, sub_id) == {"0": last, "1": last}
    opened = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0", "1"]).offsets
    assert {s: o.sequence for s, o in opened.items()} == {"0": last, "1": last}

    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    # connector API -> subscription API
    dh.update_connector_offset(project, topic, cid, "0", ConnectorOffset(2, -1))
    assert sub_sequences(dh, project, topic, sub_id) == {"0": 2, "1": last}
    # subscription API (commit) -> connector API
    session = opened["1"]
    ts = int(time.time() * 1000)
    dh.update_subscription_offset(project, topic, sub_id,
                                  {"1": OffsetWithSession(2, ts, session.version, session.session_id)})
    assert connector_sequences(dh, project, topic, cid) == {"0": 2, "1": 2}
    assert status_sequences(dh, project, topic, cid) == {"0": 2, "1": 2}
    assert dh.get_connector_shard_status(project, topic, cid, "1").shard_status_infos["1"].current_timestamp == ts
    # subscription API (reset) -> connector API
    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(3, ts, 0)})
    assert connector_sequences(dh, project, topic, cid) == {"0": 3, "1": 2}
    assert sub_sequences(dh, project, topic, sub_id) == {"0": 3, "1": 2}

    # started again, it resumes just after them, as any subscriber does: shard 0 from 4
    # (1 record), shard 1 from 3 (2)
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_RUNNING)
    assert wait_count(tclient, tproject, ttopic, SHARDS * PER_SHARD + 3) == SHARDS * PER_SHARD + 3


def test_while_running_offset_changes_and_direct_delete_are_refused(dh, project, sink):
    srv, _, tproject, ttopic = sink
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=SHARDS)
    put(dh, project, topic, "a")
    cid = create(dh, project, topic, srv, tproject, ttopic)
    sub_id = dh.get_connector(project, topic, cid).sub_id
    opened = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    with pytest.raises(InvalidOperationException) as e:
        dh.update_subscription_offset(project, topic, sub_id,
                                      {"0": OffsetWithSession(1, 1, opened.version, opened.session_id)})
    assert cid in e.value.error_msg and "running" in e.value.error_msg
    with pytest.raises(InvalidOperationException) as e:
        dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(1, 1, 0)})
    assert cid in e.value.error_msg
    with pytest.raises(InvalidOperationException) as e:
        dh.delete_subscription(project, topic, sub_id)
    assert cid in e.value.error_msg
    # stopped: the offset may change, the subscription still cannot be deleted directly
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(1, 1, 0)})
    assert connector_sequences(dh, project, topic, cid)["0"] == 1
    with pytest.raises(InvalidOperationException):
        dh.delete_subscription(project, topic, sub_id)
    # an ordinary subscription on the same topic is not affected
    plain = dh.create_subscription(project, topic, "plain").sub_id
    dh.reset_subscription_offset(project, topic, plain, {"0": OffsetWithVersion(1, 1, 0)})
    dh.delete_subscription(project, topic, plain)


def test_the_subscription_goes_with_its_connector_and_its_topic(dh, raw, project, sink):
    srv, _, tproject, ttopic = sink
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=SHARDS)
    cid = create(dh, project, topic, srv, tproject, ttopic)
    sub_id = dh.get_connector(project, topic, cid).sub_id
    assert get_sub(raw, project, topic, sub_id).status == 200
    dh.delete_connector(project, topic, cid)
    assert get_sub(raw, project, topic, sub_id).error_code == "NoSuchSubscription"
    with pytest.raises(DatahubException) as e:
        dh.get_subscription_offset(project, topic, sub_id, ["0"])
    assert e.value.error_code == "NoSuchSubscription"
    assert dh.list_subscription(project, topic, "", 1, 50).total_count == 0

    cid = create(dh, project, topic, srv, tproject, ttopic)
    sub_id = dh.get_connector(project, topic, cid).sub_id
    dh.delete_topic(project, topic)
    dh.create_tuple_topic(project, topic, SHARDS, 7, SCHEMA, "re-created")
    dh.wait_shards_ready(project, topic, 10)
    assert dh.list_connector(project, topic).connector_ids == []
    assert dh.list_subscription(project, topic, "", 1, 50).total_count == 0
    assert get_sub(raw, project, topic, sub_id).error_code == "NoSuchSubscription"


def test_restart_keeps_the_subscription_its_offsets_and_the_running_rule(sluice_factory, sink):
    srv, _, tproject, ttopic = sink
    src = sluice_factory("source")
    dh = src.client()
    project = unique_name("src")
    dh.create_project(project, "source")
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=SHARDS)
    put(dh, project, topic, "a")
    cid = create(dh, project, topic, srv, tproject, ttopic)
    sub_id = dh.get_connector(project, topic, cid).sub_id
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(3, 77, 0)})
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_RUNNING)
    src.kill()
    src.start()
    dh = src.client()
    got = dh.get_connector(project, topic, cid)
    assert got.sub_id == sub_id
    assert got.state == ConnectorState.CONNECTOR_RUNNING
    with pytest.raises(InvalidOperationException):
        dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(1, 1, 0)})
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    assert sub_sequences(dh, project, topic, sub_id)["0"] == connector_sequences(dh, project, topic, cid)["0"]
    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(1, 1, 0)})
    src.kill()
    src.start()
    dh = src.client()
    assert connector_sequences(dh, project, topic, cid)["0"] == 1
    assert sub_sequences(dh, project, topic, sub_id)["0"] == 1
