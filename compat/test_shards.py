"""Shards: list, split (at a key and in the middle), merge, extend, closed-shard semantics,
wait_shards_ready (protocol doc §4.4, §6.1, §6.2, §6.3)."""

import json

import pytest
from datahub.exceptions import InvalidParameterException, ResourceNotFoundException, ShardSealedException
from datahub.models import BlobRecord, CursorType, ShardState

from util import (MAX_HASH, NO_NEIGHBOUR, blob_records, create_blob_topic, get_records, hex32, put, read_all,
                  shard_for_key)


def shard_map(dh, project, topic):
    return {s.shard_id: s for s in dh.list_shard(project, topic).shards}


def test_list_shards_initial_layout(dh, project):
    topic = create_blob_topic(dh, project, shards=3)
    result = dh.list_shard(project, topic)
    assert isinstance(result.protocol, str)
    assert isinstance(result.interval, int)
    shards = result.shards
    assert [s.shard_id for s in shards] == ["0", "1", "2"]
    step = MAX_HASH // 3
    for i, s in enumerate(shards):
        assert s.state == ShardState.ACTIVE
        assert s.begin_hash_key == hex32(i * step)
        assert s.end_hash_key == (hex32(MAX_HASH) if i == 2 else hex32((i + 1) * step))
        assert s.parent_shard_ids == []
    assert shards[0].begin_hash_key == "0" * 32
    assert shards[0].end_hash_key == "5" * 32 and shards[1].end_hash_key == "A" * 32
    assert shards[2].end_hash_key == "F" * 32
    assert [(s.left_shard_id, s.right_shard_id) for s in shards] == [
        (NO_NEIGHBOUR, "1"), ("0", "2"), ("1", NO_NEIGHBOUR)]


def test_list_shards_of_missing_topic(dh, project):
    with pytest.raises(ResourceNotFoundException) as e:
        dh.list_shard(project, "no_such_topic")
    assert e.value.error_code == "NoSuchTopic"


def test_split_at_key(dh, project):
    topic = create_blob_topic(dh, project, shards=3)
    key = 0x2000000000000000000000000000000F
    result = dh.split_shard(project, topic, "0", hex32(key))
    new = result.new_shards
    assert len(new) == 2
    assert [(s.begin_hash_key.upper(), s.end_hash_key.upper()) for s in new] == [
        ("0" * 32, hex32(key)), (hex32(key), "5" * 32)]
    ids = [int(s.shard_id) for s in new]
    assert ids[0] > 2 and ids[1] > ids[0]

    dh.wait_shards_ready(project, topic, 5)
    shards = shard_map(dh, project, topic)
    assert len(shards) == 5
    assert shards["0"].state == ShardState.CLOSED
    for s in new:
        child = shards[s.shard_id]
        assert child.state == ShardState.ACTIVE
        assert child.parent_shard_ids == ["0"]
        assert (child.begin_hash_key, child.end_hash_key) == (s.begin_hash_key.upper(), s.end_hash_key.upper())
    assert shards["1"].state == ShardState.ACTIVE and shards["2"].state == ShardState.ACTIVE


def test_split_in_the_middle(dh, project):
    # Without a key pydatahub sends hex((begin+end)//2)[2:34]: lower case, not zero-padded.
    topic = create_blob_topic(dh, project, shards=3)
    before = shard_map(dh, project, topic)["1"]
    begin, end = int(before.begin_hash_key, 16), int(before.end_hash_key, 16)
    mid = int(hex((begin + end) // 2)[2:34], 16)
    new = dh.split_shard(project, topic, "1").new_shards
    assert [(int(s.begin_hash_key, 16), int(s.end_hash_key, 16)) for s in new] == [(begin, mid), (mid, end)]
    shards = shard_map(dh, project, topic)
    assert shards["1"].state == ShardState.CLOSED
    assert all(shards[s.shard_id].state == ShardState.ACTIVE for s in new)


def test_split_with_short_lowercase_key(dh, project):
    topic = create_blob_topic(dh, project, shards=1)
    new = dh.split_shard(project, topic, "0", "abc").new_shards
    assert [(int(s.begin_hash_key, 16), int(s.end_hash_key, 16)) for s in new] == [(0, 0xABC), (0xABC, MAX_HASH)]


@pytest.mark.parametrize("key", ["0" * 32, "6" * 32, "zz", "1" + "0" * 32])
def test_split_key_outside_the_shard_is_rejected(dh, project, key):
    topic = create_blob_topic(dh, project, shards=3)  # shard 0 is [0, 5555...)
    with pytest.raises(InvalidParameterException):
        dh.split_shard(project, topic, "0", key)
    assert len(dh.list_shard(project, topic).shards) == 3


def test_split_closed_shard_is_rejected(dh, project):
    topic = create_blob_topic(dh, project, shards=1)
    dh.split_shard(project, topic, "0")
    with pytest.raises(ShardSealedException) as e:
        dh.split_shard(project, topic, "0")
    assert e.value.error_code == "InvalidShardOperation"


def test_merge(dh, project):
    topic = create_blob_topic(dh, project, shards=3)
    # pydatahub 2.29.0's MergeShardResult is broken: TypeError after a successful call (§6.7).
    with pytest.raises(TypeError):
        dh.merge_shard(project, topic, "1", "2")
    dh.wait_shards_ready(project, topic, 5)
    shards = shard_map(dh, project, topic)
    assert len(shards) == 4
    assert shards["1"].state == ShardState.CLOSED and shards["2"].state == ShardState.CLOSED
    (child,) = [s for sid, s in shards.items() if sid not in ("0", "1", "2")]
    assert int(child.shard_id) > 2
    assert child.state == ShardState.ACTIVE
    assert sorted(child.parent_shard_ids) == ["1", "2"]
    assert (child.begin_hash_key, child.end_hash_key) == ("5" * 32, "F" * 32)
    assert shards["0"].state == ShardState.ACTIVE


def test_merge_with_raw_response(dh, project):
    # The merge response itself must carry ShardId / BeginHashKey / EndHashKey (protocol doc §4.4).
    topic = create_blob_topic(dh, project, shards=2)
    rest = dh._datahub_impl._rest_client
    content, _ = rest.post("/projects/%s/topics/%s/shards" % (project, topic),
                           data=json.dumps({"Action": "merge", "ShardId": "0", "AdjacentShardId": "1"}))
    body = json.loads(content)
    assert int(body["ShardId"]) > 1
    assert body["BeginHashKey"] == "0" * 32 and body["EndHashKey"] == "F" * 32


def test_merge_non_adjacent_is_rejected(dh, project):
    topic = create_blob_topic(dh, project, shards=3)
    with pytest.raises(InvalidParameterException):
        dh.merge_shard(project, topic, "0", "2")
    assert all(s.state == ShardState.ACTIVE for s in dh.list_shard(project, topic).shards)


def test_merge_closed_shard_is_rejected(dh, project):
    topic = create_blob_topic(dh, project, shards=3)
    dh.split_shard(project, topic, "1")
    with pytest.raises(ShardSealedException):
        dh.merge_shard(project, topic, "1", "2")


def test_extend(dh, project):
    topic = create_blob_topic(dh, project, shards=2, extend_mode=True)
    dh.extend_shard(project, topic, 4)
    dh.wait_shards_ready(project, topic, 5)
    shards = dh.list_shard(project, topic).shards
    assert sorted(int(s.shard_id) for s in shards) == [0, 1, 2, 3]
    assert all(s.state == ShardState.ACTIVE for s in shards)
    assert dh.get_topic(project, topic).shard_count == 4
    # the new shards take writes
    for sid in ("2", "3"):
        put(dh, "json", project, topic, [BlobRecord(blob_data=b"x" + sid.encode())], shard_id=sid)
        assert [r.blob_data for r in read_all(dh, project, topic, sid)] == [b"x" + sid.encode()]


def test_wait_shards_ready(dh, project):
    topic = create_blob_topic(dh, project, shards=2)
    assert dh.wait_shards_ready(project, topic, 5) is None
    dh.split_shard(project, topic, "0")
    assert dh.wait_shards_ready(project, topic, 5) is None
    assert {s.state for s in dh.list_shard(project, topic).shards} <= {ShardState.ACTIVE, ShardState.CLOSED}


@pytest.fixture
def closed_shard(dh, project):
    """A blob topic whose shard 0 holds 3 records and was then split (so it is CLOSED)."""
    topic = create_blob_topic(dh, project, shards=2)
    put(dh, "json", project, topic, blob_records([b"r0", b"r1", b"r2"]), shard_id="0")
    dh.split_shard(project, topic, "0")
    return topic


def test_write_to_closed_shard_fails_per_record(dh, project, closed_shard, client_factory):
    for protocol in ("json", "pb"):
        client = client_factory(protocol)
        recs = blob_records([b"ok", b"sealed"])
        recs[0].shard_id = "1"
        recs[1].shard_id = "0"
        result = client.put_records(project, closed_shard, recs)
        assert result.failed_record_count == 1, protocol
        assert [(f.index, f.error_code) for f in result.failed_records] == [(1, "InvalidShardOperation")]


@pytest.mark.parametrize("protocol", ["pb", "batch"])
def test_write_by_shard_to_closed_shard_raises(dh, project, closed_shard, client_factory, protocol):
    client = client_factory(protocol)
    with pytest.raises(ShardSealedException) as e:
        client.put_records_by_shard(project, closed_shard, "0", blob_records([b"sealed"]))
    assert e.value.error_code == "InvalidShardOperation"
    assert [r.blob_data for r in read_all(dh, project, closed_shard, "0")] == [b"r0", b"r1", b"r2"]


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_closed_shard_is_readable_then_sealed(dh, project, closed_shard, client_factory, protocol):
    client = client_factory(protocol)
    cursor = client.get_cursor(project, closed_shard, "0", CursorType.OLDEST).cursor
    result = get_records(client, project, closed_shard, "0", cursor, 10)
    assert [r.blob_data for r in result.records] == [b"r0", b"r1", b"r2"]
    # reading at the end of a CLOSED shard says "finished" with InvalidShardOperation (§6.3)
    with pytest.raises(ShardSealedException) as e:
        get_records(client, project, closed_shard, "0", result.next_cursor, 10)
    assert e.value.error_code == "InvalidShardOperation"
    # a LATEST cursor still points at the last record
    latest = client.get_cursor(project, closed_shard, "0", CursorType.LATEST)
    assert latest.sequence == result.records[-1].sequence


def test_routing_after_split_goes_to_children(dh, project):
    topic = create_blob_topic(dh, project, shards=1)
    new = dh.split_shard(project, topic, "0", hex32(1 << 127)).new_shards
    shards = dh.list_shard(project, topic).shards
    low, high = new[0].shard_id, new[1].shard_id
    recs = blob_records([b"low", b"high"])
    recs[0].hash_key = hex32(5)
    recs[1].hash_key = hex32((1 << 127) + 5)
    result = dh.put_records(project, topic, recs)
    assert result.failed_record_count == 0, [(f.index, f.error_code) for f in result.failed_records]
    assert shard_for_key(shards, 5) == low
    assert [r.blob_data for r in read_all(dh, project, topic, low)] == [b"low"]
    assert [r.blob_data for r in read_all(dh, project, topic, high)] == [b"high"]
    assert read_all(dh, project, topic, "0") == []
