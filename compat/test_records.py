"""Records in every protocol x compression: put (routed and by shard), get with paging, cursors,
attributes, exact round-trip of every field type, metering (protocol doc §4.5-§4.8, §5, §6.2-§6.4)."""

import math
import random
import time

import pytest
from datahub.exceptions import ResourceNotFoundException, SeekOutOfRangeException
from datahub.models import CursorType, FieldType, RecordSchema, TupleRecord

from util import (BLOBS, MATRIX, MAX_HASH, all_types_schema, assert_rows_equal, attrs_for, blob_records,
                  create_blob_topic, create_tuple_topic, cursor_of, expected_row, get_records, hex32, md5_key,
                  now_ms, put, read_all, read_pages, rows_for, shard_for_key, tuple_records, values)

ROUTED = [p for p in MATRIX if p.values[0][0] in ("json", "pb")]
BY_SHARD = [p for p in MATRIX if p.values[0][0] in ("pb", "batch")]


def expected_sequences(protocol, batch_sizes):
    """JSON/PB records get one sequence each; a batch put gets one sequence for the whole batch."""
    if protocol == "batch":
        return [i for i, n in enumerate(batch_sizes) for _ in range(n)]
    return list(range(sum(batch_sizes)))


def test_tuple_round_trip_every_type(dh, project, matrix_client):
    protocol, client = matrix_client.protocol, matrix_client.client
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    rows = rows_for(protocol)
    t0 = now_ms()
    put(client, protocol, project, topic, tuple_records(schema, rows, lambda i: attrs_for(protocol, i)))
    t1 = now_ms()

    got = read_all(client, project, topic, "0", schema)
    assert_rows_equal([values(r) for r in got], [expected_row(r, protocol) for r in rows])
    assert [r.attributes for r in got] == [attrs_for(protocol, i) for i in range(len(rows))]
    assert [r.sequence for r in got] == expected_sequences(protocol, [len(rows)])
    for r in got:
        assert t0 - 2000 <= r.system_time <= t1 + 2000, (r.system_time, t0, t1)


def test_blob_round_trip(dh, project, matrix_client):
    protocol, client = matrix_client.protocol, matrix_client.client
    topic = create_blob_topic(dh, project)
    put(client, protocol, project, topic, blob_records(BLOBS, lambda i: attrs_for(protocol, i)))
    got = read_all(client, project, topic, "0")
    assert [r.blob_data for r in got] == BLOBS
    assert [r.attributes for r in got] == [attrs_for(protocol, i) for i in range(len(BLOBS))]
    assert [r.sequence for r in got] == expected_sequences(protocol, [len(BLOBS)])


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_double_special_values(dh, project, client_factory, protocol):
    schema = RecordSchema.from_lists(["d", "f"], [FieldType.DOUBLE, FieldType.FLOAT])
    topic = create_tuple_topic(dh, project, schema)
    client = client_factory(protocol)
    rows = [[math.inf, math.inf], [-math.inf, -math.inf], [math.nan, math.nan]]
    put(client, protocol, project, topic, tuple_records(schema, rows))
    got = [values(r) for r in read_all(client, project, topic, "0", schema)]
    assert got[0] == [math.inf, math.inf] and got[1] == [-math.inf, -math.inf]
    assert math.isnan(got[2][0]) and math.isnan(got[2][1])


@pytest.mark.parametrize("combo", ROUTED)
def test_put_records_routing_and_partial_failure(dh, project, client_factory, combo):
    protocol, compress = combo
    client = client_factory(protocol, compress)
    topic = create_blob_topic(dh, project, shards=3)
    shards = dh.list_shard(project, topic).shards
    step = MAX_HASH // 3

    recs = blob_records([b"by-shard-id", b"to-missing-shard", b"by-hash-key", b"by-partition-key-a",
                         b"by-partition-key-b", b"by-lowercase-hash-key", b"no-routing-info"])
    recs[0].shard_id = "2"
    recs[1].shard_id = "99"
    recs[2].hash_key = hex32(step + 10)
    recs[3].partition_key = "alpha"
    recs[4].partition_key = "user-4711 ✓"
    recs[5].hash_key = hex32(2 * step + 77).lower()
    result = client.put_records(project, topic, recs)

    assert result.failed_record_count == 1
    assert len(result.failed_records) == 1
    failed = result.failed_records[0]
    assert failed.index == 1
    assert failed.error_code, "a failed record carries an ErrorCode"

    want = {"0": [], "1": [], "2": []}
    want["2"].append(b"by-shard-id")
    want["1"].append(b"by-hash-key")
    want[shard_for_key(shards, md5_key("alpha"))].append(b"by-partition-key-a")
    want[shard_for_key(shards, md5_key("user-4711 ✓"))].append(b"by-partition-key-b")
    want["2"].append(b"by-lowercase-hash-key")
    stored = {sid: [r.blob_data for r in read_all(client, project, topic, sid)] for sid in ("0", "1", "2")}
    # a record without ShardId/HashKey/PartitionKey goes wherever the server likes, but exactly once
    assert sum(v.count(b"no-routing-info") for v in stored.values()) == 1
    for sid in ("0", "1", "2"):
        assert [d for d in stored[sid] if d != b"no-routing-info"] == want[sid], "shard " + sid


@pytest.mark.parametrize("combo", ROUTED)
def test_put_records_same_partition_key_same_shard(dh, project, client_factory, combo):
    protocol, compress = combo
    client = client_factory(protocol, compress)
    schema = RecordSchema.from_lists(["k", "n"], [FieldType.STRING, FieldType.BIGINT])
    topic = create_tuple_topic(dh, project, schema, shards=4)
    recs = []
    for n in range(12):
        rec = TupleRecord(schema=schema, values=["key%d" % (n % 3), n])
        rec.partition_key = "key%d" % (n % 3)
        recs.append(rec)
    assert client.put_records(project, topic, recs).failed_record_count == 0
    seen = {}
    for sid in ("0", "1", "2", "3"):
        for r in read_all(client, project, topic, sid, schema):
            seen.setdefault(r.values[0], set()).add(sid)
            assert r.values[1] % 3 == int(r.values[0][3:])
    assert sorted(seen) == ["key0", "key1", "key2"]
    assert all(len(s) == 1 for s in seen.values()), seen  # one key, one shard


@pytest.mark.parametrize("combo", BY_SHARD)
def test_put_records_by_shard(dh, project, client_factory, combo):
    protocol, compress = combo
    client = client_factory(protocol, compress)
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=2)
    rows = rows_for("batch")  # no NULLs, so both writers can send them
    client.put_records_by_shard(project, topic, "1", tuple_records(schema, rows[:2]))
    client.put_records_by_shard(project, topic, "1", tuple_records(schema, rows[2:]))
    got = read_all(client, project, topic, "1", schema)
    assert_rows_equal([values(r) for r in got], rows)
    assert [r.sequence for r in got] == expected_sequences(protocol, [2, len(rows) - 2])
    assert read_all(client, project, topic, "0", schema) == []


def _write_seven(client, protocol, project, topic, schema):
    """Seven single-record puts, a little apart in time: sequences 0..6 in every protocol."""
    for i in range(7):
        put(client, protocol, project, topic, tuple_records(schema, [[i, "v%d" % i]]))
        time.sleep(0.01)


SMALL = RecordSchema.from_lists(["n", "s"], [FieldType.BIGINT, FieldType.STRING])


@pytest.mark.parametrize("combo", MATRIX)
def test_paging_and_cursors(dh, project, client_factory, combo):
    protocol, compress = combo
    client = client_factory(protocol, compress)
    topic = create_tuple_topic(dh, project, SMALL)
    _write_seven(client, protocol, project, topic, SMALL)

    # OLDEST + paging with limit 3 through NextCursor
    oldest = client.get_cursor(project, topic, "0", CursorType.OLDEST)
    records, pages = read_pages(client, project, topic, "0", SMALL, limit=3, cursor=oldest.cursor)
    assert [values(r) for r in records] == [[i, "v%d" % i] for i in range(7)]
    assert [r.sequence for r in records] == list(range(7))
    assert len(pages) >= 3
    for page in pages:
        assert 1 <= len(page.records) <= 3
        assert page.start_seq == page.records[0].sequence
    assert oldest.sequence == 0
    assert oldest.record_time == records[0].system_time
    times = [r.system_time for r in records]
    assert times == sorted(times)

    # limit 0 (pydatahub's default) and negative limits mean the server maximum
    assert len(get_records(client, project, topic, "0", oldest.cursor, 0, SMALL).records) == 7
    assert len(get_records(client, project, topic, "0", oldest.cursor, -1, SMALL).records) == 7

    # LATEST points at the newest record
    latest = client.get_cursor(project, topic, "0", CursorType.LATEST)
    assert latest.sequence == 6
    assert latest.record_time == records[6].system_time
    assert [values(r) for r in get_records(client, project, topic, "0", latest.cursor, 10, SMALL).records] == \
        [[6, "v6"]]

    # SEQUENCE
    seq4 = client.get_cursor(project, topic, "0", CursorType.SEQUENCE, 4)
    assert seq4.sequence == 4
    assert seq4.record_time == records[4].system_time
    assert [values(r) for r in get_records(client, project, topic, "0", seq4.cursor, 2, SMALL).records] == \
        [[4, "v4"], [5, "v5"]]

    # SYSTEM_TIME: the first record whose system time is >= t
    t = records[3].system_time
    want = min(i for i, st in enumerate(times) if st >= t)
    by_time = client.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, t)
    assert by_time.sequence == want
    assert get_records(client, project, topic, "0", by_time.cursor, 1, SMALL).records[0].sequence == want
    assert client.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, 0).sequence == 0

    # beyond the end
    with pytest.raises(SeekOutOfRangeException) as e:
        client.get_cursor(project, topic, "0", CursorType.SEQUENCE, 100)
    assert e.value.error_code == "SeekOutOfRange"

    # latest + 1 is the "resume after the last record" cursor consumers use (§7.6): nothing yet...
    after = client.get_cursor(project, topic, "0", CursorType.SEQUENCE, 7).cursor
    assert get_records(client, project, topic, "0", after, 10, SMALL).records == []
    end = pages[-1].next_cursor
    empty = get_records(client, project, topic, "0", end, 10, SMALL)
    assert empty.records == [] and empty.record_count == 0 and empty.next_cursor
    # ...and both see the next record once it is written (polling)
    put(client, protocol, project, topic, tuple_records(SMALL, [[7, "v7"]]))
    for cursor in (after, end, empty.next_cursor):
        got = get_records(client, project, topic, "0", cursor, 10, SMALL).records
        assert [(r.sequence, values(r)) for r in got] == [(7, [7, "v7"])]


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_cursors_on_empty_shard(dh, project, client_factory, protocol):
    client = client_factory(protocol)
    topic = create_blob_topic(dh, project)
    oldest = cursor_of(client, project, topic, "0", CursorType.OLDEST)
    latest = cursor_of(client, project, topic, "0", CursorType.LATEST)
    for cursor in (oldest, latest):
        result = get_records(client, project, topic, "0", cursor, 10)
        assert result.records == [] and result.record_count == 0 and result.next_cursor
    put(client, protocol, project, topic, blob_records([b"first"]))
    for cursor in (oldest, latest):
        assert [r.blob_data for r in get_records(client, project, topic, "0", cursor, 10).records] == [b"first"]


def test_get_metering_info(dh, project):
    topic = create_blob_topic(dh, project)
    put(dh, "json", project, topic, blob_records([b"m" * 100]))
    info = dh.get_metering_info(project, topic, "0")
    assert isinstance(info.active_time, int) and info.active_time >= 0
    assert isinstance(info.storage, int) and info.storage >= 0
    with pytest.raises(ResourceNotFoundException) as e:
        dh.get_metering_info(project, topic, "99")
    assert e.value.error_code == "NoSuchShard"


def test_put_records_json_ignores_client_sequence_fields(dh, project):
    # Records that were read and are re-sent carry their old Sequence/SystemTime: the server assigns new ones.
    topic = create_blob_topic(dh, project)
    put(dh, "json", project, topic, blob_records([b"a", b"b"]))
    old = read_all(dh, project, topic, "0")
    for r in old:
        r.shard_id = "0"
    assert dh.put_records(project, topic, old).failed_record_count == 0
    again = read_all(dh, project, topic, "0")
    assert [r.sequence for r in again] == [0, 1, 2, 3]
    assert [r.blob_data for r in again] == [b"a", b"b", b"a", b"b"]
    assert again[2].system_time >= again[1].system_time


@pytest.mark.parametrize("combo", MATRIX)
def test_large_values(dh, project, client_factory, combo):
    protocol, compress = combo
    client = client_factory(protocol, compress)
    big_text = ("large value ✓ %d " * 20000) % tuple(range(20000))  # ~400 KB, compressible
    big_blob = bytes(random.Random(3).randbytes(300_000)) + b"\x00" * 700_000  # 1 MB, half random
    schema = RecordSchema.from_lists(["n", "s"], [FieldType.BIGINT, FieldType.STRING])
    ttopic = create_tuple_topic(dh, project, schema)
    btopic = create_blob_topic(dh, project)
    put(client, protocol, project, ttopic, tuple_records(schema, [[1, big_text], [2, "small"]]))
    put(client, protocol, project, btopic, blob_records([big_blob, b"small"]))
    assert [values(r) for r in read_all(client, project, ttopic, "0", schema)] == [[1, big_text], [2, "small"]]
    assert [r.blob_data for r in read_all(client, project, btopic, "0")] == [big_blob, b"small"]
