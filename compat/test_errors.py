"""Errors: unknown resources, bad cursors, records that do not match the schema, too many records,
garbage and corrupt-compressed bodies (protocol doc §3, §6.4, §6.5)."""

import json
import struct
import zlib

import lz4.block
import pytest
from cprotobuf.internal import encode_data
from datahub.batch.batch_serializer import BatchSerializer
from datahub.batch.utils import SchemaObject
from datahub.exceptions import (InvalidCursorException, InvalidParameterException, LimitExceededException,
                                ResourceNotFoundException)
from datahub.models import BlobRecord, CompressFormat, CursorType, FieldType, RecordSchema, TupleRecord
from datahub.models.params import PutPBRecordsRequestParams
from datahub.proto.datahub_record_proto_pb import GetRecordsRequest, PutBinaryRecordsRequest
from datahub.utils import pb_message_wrap

from util import (blob_records, create_blob_topic, create_tuple_topic, cursor_of, get_records, put, read_all,
                  unique_name, values)

PARSE_ERROR_CODES = ("InvalidParameter", "MalformedRecord", "InvalidUriSpec")


# --------------------------------------------------------------------------------------------
# unknown resources

def test_unknown_project_topic_shard(dh, project, client_factory):
    topic = create_blob_topic(dh, project)
    missing_project = unique_name("nope")

    cases = [
        ("NoSuchTopic", lambda: dh.get_topic(project, "missing_topic")),
        ("NoSuchProject", lambda: dh.get_topic(missing_project, topic)),
        ("NoSuchTopic", lambda: dh.get_cursor(project, "missing_topic", "0", CursorType.OLDEST)),
        ("NoSuchShard", lambda: dh.get_cursor(project, topic, "99", CursorType.OLDEST)),
        ("NoSuchShard", lambda: dh.split_shard(project, topic, "99", "1" * 32)),
        ("NoSuchTopic", lambda: dh.put_records(project, "missing_topic", blob_records([b"x"]))),
        ("NoSuchProject", lambda: dh.put_records(missing_project, topic, blob_records([b"x"]))),
        ("NoSuchTopic", lambda: dh.update_topic(project, "missing_topic", 1, "")),
    ]
    cursor = cursor_of(dh, project, topic, "0")
    for protocol in ("json", "pb", "batch"):
        client = client_factory(protocol)
        cases.append(("NoSuchShard", lambda c=client: c.get_blob_records(project, topic, "99", cursor, 1)))
        cases.append(("NoSuchTopic", lambda c=client: c.get_blob_records(project, "missing_topic", "0", cursor, 1)))
        if protocol != "json":
            cases.append(("NoSuchShard",
                          lambda c=client: c.put_records_by_shard(project, topic, "99", blob_records([b"x"]))))
    for i, (code, call) in enumerate(cases):
        with pytest.raises(ResourceNotFoundException) as e:
            call()
        assert e.value.error_code == code, "case %d" % i
        assert e.value.status_code == 404, "case %d" % i


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
@pytest.mark.parametrize("cursor", ["garbage", "z" * 32, "2" + "0" * 30, "0123456789abcdef" * 4])
def test_malformed_cursor(dh, project, client_factory, protocol, cursor):
    topic = create_blob_topic(dh, project)
    put(dh, "json", project, topic, blob_records([b"x"]))
    with pytest.raises(InvalidCursorException) as e:
        get_records(client_factory(protocol), project, topic, "0", cursor, 10)
    assert e.value.error_code == "InvalidCursor"


# --------------------------------------------------------------------------------------------
# records that do not match the topic

def assert_record_rejected(call, index=0):
    """A bad record is refused: either the whole request fails with InvalidParameterException, or
    (put_records only) the response lists the record as failed with MalformedRecord/InvalidParameter."""
    try:
        result = call()
    except InvalidParameterException as e:
        assert e.error_code in ("MalformedRecord", "InvalidParameter"), e.error_code
        assert e.status_code == 400
        return "request"
    assert result is not None, "put_records_by_shard accepted a malformed record"
    assert result.failed_record_count >= 1, "malformed record accepted"
    indexes = {f.index: f.error_code for f in result.failed_records}
    assert index in indexes, indexes
    assert indexes[index] in ("MalformedRecord", "InvalidParameter"), indexes
    return "record"


THREE = RecordSchema.from_lists(["a", "b", "c"], [FieldType.BIGINT, FieldType.STRING, FieldType.DOUBLE])


@pytest.mark.parametrize("protocol,by_shard", [("json", False), ("pb", False), ("pb", True)])
@pytest.mark.parametrize("shape", ["too-few", "too-many", "blob-into-tuple"])
def test_wrong_field_count(dh, project, client_factory, protocol, by_shard, shape):
    topic = create_tuple_topic(dh, project, THREE)
    client = client_factory(protocol)
    if shape == "too-few":
        bad = TupleRecord(schema=RecordSchema.from_lists(["a", "b"], [FieldType.BIGINT, FieldType.STRING]),
                          values=[1, "x"])
    elif shape == "too-many":
        bad = TupleRecord(schema=RecordSchema.from_lists(["a", "b", "c", "d"], [FieldType.BIGINT] * 4),
                          values=[1, 2, 3, 4])
    else:
        bad = BlobRecord(blob_data=b"not a tuple")
    good = TupleRecord(schema=THREE, values=[1, "ok", 1.5])
    if by_shard:
        with pytest.raises(InvalidParameterException) as e:
            client.put_records_by_shard(project, topic, "0", [good, bad])
        assert e.value.error_code in ("MalformedRecord", "InvalidParameter")
        assert read_all(client, project, topic, "0", THREE) == []  # all or nothing
        return
    good.shard_id = "0"
    bad.shard_id = "0"
    how = assert_record_rejected(lambda: client.put_records(project, topic, [good, bad]), index=1)
    stored = [values(r) for r in read_all(client, project, topic, "0", THREE)]
    assert stored == ([] if how == "request" else [[1, "ok", 1.5]])


@pytest.mark.parametrize("protocol", ["json", "pb"])
def test_tuple_into_blob_topic(dh, project, client_factory, protocol):
    topic = create_blob_topic(dh, project)
    client = client_factory(protocol)
    rec = TupleRecord(schema=THREE, values=[1, "x", 2.0])
    rec.shard_id = "0"
    assert_record_rejected(lambda: client.put_records(project, topic, [rec]))
    assert read_all(client, project, topic, "0") == []


BAD_VALUES = [
    (FieldType.BIGINT, "abc"),
    (FieldType.BIGINT, "9223372036854775808"),
    (FieldType.BIGINT, "1.5"),
    (FieldType.INTEGER, "2147483648"),
    (FieldType.SMALLINT, "32768"),
    (FieldType.TINYINT, "128"),
    (FieldType.TINYINT, "-129"),
    (FieldType.TIMESTAMP, "abc"),
    (FieldType.TIMESTAMP, "1.5"),
    (FieldType.BOOLEAN, "yes"),
    (FieldType.DOUBLE, "abc"),
    (FieldType.FLOAT, "x1"),
    (FieldType.DECIMAL, "abc"),
    (FieldType.DECIMAL, "1.2.3"),
]


@pytest.mark.parametrize("protocol", ["json", "pb"])
@pytest.mark.parametrize("ftype,text", BAD_VALUES, ids=["%s-%s" % (t.value, v) for t, v in BAD_VALUES])
def test_wrong_value_for_field_type(dh, project, client_factory, protocol, ftype, text):
    # pydatahub validates values client-side; a STRING-typed record of the same shape sends the text as is.
    topic = create_tuple_topic(dh, project, RecordSchema.from_lists(["v"], [ftype]))
    rec = TupleRecord(schema=RecordSchema.from_lists(["v"], [FieldType.STRING]), values=[text])
    rec.shard_id = "0"
    client = client_factory(protocol)
    assert_record_rejected(lambda: client.put_records(project, topic, [rec]))
    if protocol == "pb":
        with pytest.raises(InvalidParameterException):
            client.put_records_by_shard(project, topic, "0", [TupleRecord(
                schema=RecordSchema.from_lists(["v"], [FieldType.STRING]), values=[text])])
    assert read_all(dh, project, topic, "0", RecordSchema.from_lists(["v"], [FieldType.STRING])) == []


@pytest.mark.parametrize("protocol", ["json", "pb"])
def test_null_in_not_null_field(dh, project, client_factory, protocol):
    strict = RecordSchema.from_lists(["a", "b"], [FieldType.BIGINT, FieldType.STRING], None, [False, True])
    loose = RecordSchema.from_lists(["a", "b"], [FieldType.BIGINT, FieldType.STRING])
    topic = create_tuple_topic(dh, project, strict)
    client = client_factory(protocol)
    rec = TupleRecord(schema=loose, values=[None, "x"])  # the SDK would refuse this with `strict`
    rec.shard_id = "0"
    assert_record_rejected(lambda: client.put_records(project, topic, [rec]))
    assert read_all(dh, project, topic, "0", strict) == []
    # NULL in the nullable column is fine
    ok = TupleRecord(schema=strict, values=[1, None])
    ok.shard_id = "0"
    assert client.put_records(project, topic, [ok]).failed_record_count == 0


# --------------------------------------------------------------------------------------------
# limits

MAX_PUT = 10000  # the PB producer packs up to 10,000 records into one put (protocol doc §6.5)


def test_too_many_records_per_put(dh, project, client_factory):
    topic = create_blob_topic(dh, project)
    pb = client_factory("pb")
    pb.put_records_by_shard(project, topic, "0", blob_records([b"r%d" % i for i in range(MAX_PUT)]))
    latest = dh.get_cursor(project, topic, "0", CursorType.LATEST)
    assert latest.sequence == MAX_PUT - 1

    too_many = blob_records([b"t%d" % i for i in range(MAX_PUT + 1)])
    for rec in too_many:
        rec.shard_id = "0"
    for client in (dh, pb):
        with pytest.raises((LimitExceededException, InvalidParameterException)) as e:
            client.put_records(project, topic, too_many)
        assert e.value.error_code in ("LimitExceeded", "InvalidParameter")
    with pytest.raises((LimitExceededException, InvalidParameterException)):
        pb.put_records_by_shard(project, topic, "0", blob_records([b"t%d" % i for i in range(MAX_PUT + 1)]))
    assert dh.get_cursor(project, topic, "0", CursorType.LATEST).sequence == MAX_PUT - 1

    # reads are capped at the server maximum (1000); limit <= 0 means that maximum
    oldest = cursor_of(dh, project, topic, "0")
    for client in (dh, pb, client_factory("batch")):
        assert len(get_records(client, project, topic, "0", oldest, 0).records) == 1000
        assert len(get_records(client, project, topic, "0", oldest, 5000).records) <= 1000


# --------------------------------------------------------------------------------------------
# garbage bodies, sent raw

def _pb_frame(payload):
    return pb_message_wrap(bytes(payload))


def _valid_pb_put():
    rec = BlobRecord(blob_data=b"hello")
    return bytes(PutPBRecordsRequestParams([rec]).content())


def _batch_put(batch_bytes):
    return _pb_frame(encode_data(PutBinaryRecordsRequest, {"records": [{"data": batch_bytes}]}))


def _valid_batch():
    schema_object = SchemaObject("p", "t", None)
    return bytes(BatchSerializer.serialize(CompressFormat.NONE, schema_object,
                                           [BlobRecord(blob_data=b"hello world, this is a batch")]))


def _flip(data, pos):
    data = bytearray(data)
    data[pos] ^= 0xFF
    return bytes(data)


JSON_PUB = json.dumps({"Action": "pub", "Records": [{"Data": "aGVsbG8=", "ShardId": "0"}]}).encode()
JSON_SUB_PREFIX = '{"Action": "sub", "Cursor": "%s", "Limit": 10}'
PB = {"Content-Type": "application/x-protobuf", "x-datahub-request-action": "pub"}
BATCH = {"Content-Type": "application/x-binary", "x-datahub-request-action": "pub"}


def garbage_cases():
    valid_batch = _valid_batch()
    lying_count = valid_batch[:22] + struct.pack("<I", 5) + valid_batch[26:]
    pb_put = _valid_pb_put()
    lz4_ok = lz4.block.compress(JSON_PUB * 1, store_size=False)
    return [
        # (id, target, headers, body)
        ("json-not-json", "shards", {}, b"{not json"),
        ("json-array", "shards", {}, b"[1, 2, 3]"),
        ("json-records-not-array", "shards", {}, b'{"Action": "pub", "Records": "x"}'),
        ("json-unknown-action", "shard", {}, b'{"Action": "frobnicate"}'),
        ("json-binary-garbage", "shard", {}, bytes(range(256)) * 4),
        ("pb-no-frame", "shards", PB, b"garbage garbage garbage"),
        ("pb-bad-crc", "shards", PB, _flip(pb_put, 5)),
        ("pb-bad-magic", "shards", PB, b"XHUB" + pb_put[4:]),
        ("pb-bad-length", "shards", PB, pb_put[:8] + struct.pack(">I", 1000) + pb_put[12:]),
        ("pb-truncated", "shard", PB, pb_put[:-3]),
        ("pb-not-protobuf", "shard", PB, _pb_frame(b"\xff\xff\xff\xff\xff")),
        ("pb-get-garbage", "shard", {"Content-Type": "application/x-protobuf",
                                     "x-datahub-request-action": "sub"}, b"DHUB garbage"),
        ("batch-garbage-batch", "shard", BATCH, _batch_put(b"this is no batch at all, sorry")),
        ("batch-bad-batch-crc", "shard", BATCH, _batch_put(_flip(valid_batch, 40))),
        ("batch-lying-record-count", "shard", BATCH, _batch_put(lying_count)),
        ("batch-truncated-batch", "shard", BATCH, _batch_put(valid_batch[:30])),
        ("batch-no-frame", "shard", BATCH, b"\x00\x01\x02"),
        ("batch-get-garbage", "shard", {"Content-Type": "application/x-binary",
                                        "x-datahub-request-action": "sub"}, _pb_frame(b"\xff\xfe")),
        ("lz4-garbage", "shards", {"Content-Encoding": "lz4", "x-datahub-content-raw-size": "100"},
         bytes(range(200, 256)) * 3),
        ("lz4-raw-size-too-small", "shards", {"Content-Encoding": "lz4", "x-datahub-content-raw-size": "10"},
         lz4_ok),
        ("lz4-huge-raw-size", "shards", {"Content-Encoding": "lz4", "x-datahub-content-raw-size": "4000000000"},
         b"\xff" * 64),
        ("lz4-bad-raw-size", "shards", {"Content-Encoding": "lz4", "x-datahub-content-raw-size": "ten"}, lz4_ok),
        ("zlib-garbage", "shards", {"Content-Encoding": "zlib", "x-datahub-content-raw-size": "100"},
         b"\x78\x9c" + b"\xff" * 40),
        ("zlib-truncated", "shards", {"Content-Encoding": "zlib", "x-datahub-content-raw-size": str(len(JSON_PUB))},
         zlib.compress(JSON_PUB)[:-8]),
        ("pb-lz4-garbage", "shard", dict(PB, **{"Content-Encoding": "lz4", "x-datahub-content-raw-size": "64"}),
         b"\x00" * 10),
        ("unknown-content-encoding", "shards", {"Content-Encoding": "gzip"}, zlib.compress(JSON_PUB)),
    ]


GARBAGE = garbage_cases()


@pytest.mark.parametrize("case", GARBAGE, ids=[c[0] for c in GARBAGE])
def test_garbage_body_gets_datahub_error(dh, project, raw, server, case):
    name, target, headers, body = case
    topic = create_blob_topic(dh, project)
    path = "/projects/%s/topics/%s/shards" % (project, topic)
    if target == "shard":
        path += "/0"
    headers = dict(headers)
    content_type = headers.pop("Content-Type", "application/json")
    resp = raw.post(path, body=body, headers=headers, content_type=content_type)
    assert resp.status == 400, resp
    assert resp.error_code in PARSE_ERROR_CODES, resp
    # the server is unharmed and nothing was written
    assert server.alive()
    assert read_all(dh, project, topic, "0") == []
    put(dh, "json", project, topic, blob_records([b"after"]))
    assert [r.blob_data for r in read_all(dh, project, topic, "0")] == [b"after"]


@pytest.mark.parametrize("method,path_fmt,body", [
    ("POST", "/projects/%s_new", b"not json"),
    ("PUT", "/projects/%s", b"{"),
    ("POST", "/projects/%s/topics/t_new", b'{"ShardCount": "many"}'),
    ("POST", "/projects/%s/topics/t_new", b"\xff\xfe"),
], ids=["create-project", "update-project", "create-topic-bad-type", "create-topic-binary"])
def test_garbage_metadata_body(dh, project, raw, method, path_fmt, body):
    resp = raw.request(method, path_fmt % project, body=body)
    assert resp.status == 400, resp
    assert resp.error_code in PARSE_ERROR_CODES, resp
    assert dh.get_project(project).project_name == project


def test_unknown_path(raw):
    resp = raw.get("/no/such/path")
    assert 400 <= resp.status < 500
    assert resp.error_code in ("InvalidUriSpec", "InvalidParameter")


def test_json_get_with_lz4_compressed_request(dh, project, raw):
    """A well-formed LZ4 request body (what pydatahub sends by default) is accepted raw too."""
    topic = create_blob_topic(dh, project)
    put(dh, "json", project, topic, blob_records([b"compressed read"]))
    cursor = cursor_of(dh, project, topic, "0")
    body = (JSON_SUB_PREFIX % cursor).encode()
    compressed = lz4.block.compress(body, store_size=False)
    resp = raw.post("/projects/%s/topics/%s/shards/0" % (project, topic), body=compressed,
                    headers={"Content-Encoding": "lz4", "x-datahub-content-raw-size": str(len(body)),
                             "Accept-Encoding": "lz4"})
    assert resp.status == 200, resp
    data = resp.json()
    assert data["RecordCount"] == 1 and len(data["Records"]) == 1
    # GetRecordsRequest framing check for PB gets as well
    frame = _pb_frame(encode_data(GetRecordsRequest, {"cursor": cursor, "limit": 10}))
    resp = raw.post("/projects/%s/topics/%s/shards/0" % (project, topic), body=frame,
                    headers={"x-datahub-request-action": "sub"}, content_type="application/x-protobuf")
    assert resp.status == 200, resp
    assert resp.body[:4] == b"DHUB"


# --------------------------------------------------------------------------------------------
# other SDKs' spellings (protocol doc §1.5: Action is matched case-insensitively)

def test_action_names_are_case_insensitive(dh, project, raw):
    topic = unique_name("t")
    base = "/projects/%s/topics/%s" % (project, topic)
    schema = json.dumps({"fields": [{"name": "a", "type": "BIGINT"}]})
    # [go] sends Action "create" for topic creation and upper-case type names are accepted
    resp = raw.post(base, body={"Action": "create", "ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE",
                                "RecordSchema": schema, "Comment": "go style"})
    assert resp.status < 400, resp
    resp = raw.post(base, body={"Action": "AppendField", "FieldName": "b", "FieldType": "STRING"})
    assert resp.status < 400, resp
    assert [f.name for f in dh.get_topic(project, topic).record_schema.field_list] == ["a", "b"]
    resp = raw.post(base + "/shards/0", body={"Action": "Cursor", "Type": "OLDEST"})
    assert resp.status == 200 and resp.json()["Cursor"], resp
    resp = raw.post(base + "/shards/0", body={"Action": "METER"})
    assert resp.status == 200 and "ActiveTime" in resp.json(), resp
    resp = raw.post(base + "/shards", body={"Action": "Split", "ShardId": "0", "SplitKey": "8" + "0" * 31})
    assert resp.status == 200 and len(resp.json()["NewShards"]) == 2, resp
    resp = raw.post(base, body={"Action": "listschema", "PageNumber": -1, "PageSize": -1})
    assert resp.status == 200 and resp.json()["RecordSchemaList"], resp
