"""Codec shapes of the official Go and Java SDKs, sent as raw signed HTTP (issue 8 items 1-3):
upper-case field types in every rendered schema, batch records without a field count (Go SDK
v0.2.x), and zstd request bodies and batch payloads. The SDKs cannot be built here; each test
cites the SDK source it reproduces (aliyun-datahub-sdk-go at tag v0.2.1 unless said otherwise,
aliyun-datahub-sdk-java 2.13.0). docs/sdk-wire.md lists the differences."""

import base64
import json
import struct
import zlib

import crcmod.predefined
import lz4.block
import pytest
import zstandard
from cprotobuf.internal import encode_data
from datahub.models import BlobRecord, FieldType, RecordSchema
from datahub.models.params import PutPBRecordsRequestParams
from datahub.proto.datahub_record_proto_pb import PutBinaryRecordsRequest
from datahub.utils import pb_message_wrap

from util import create_blob_topic, read_all, unique_name

# datahub/types.go:128 validateFieldType: the only spellings the Go SDK accepts (it panics on
# any other in NewRecordSchemaFromJson / AddField, datahub/topic.go:36, 83).
GO_TYPES = ["BIGINT", "STRING", "BOOLEAN", "DOUBLE", "TIMESTAMP", "DECIMAL", "INTEGER", "FLOAT", "TINYINT",
            "SMALLINT"]

crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def _schema_types(schema_text):
    return [f["type"] for f in json.loads(schema_text)["fields"]]


def _topic_path(project, topic):
    return "/projects/%s/topics/%s" % (project, topic)


def _ok(resp):
    assert 200 <= resp.status < 300, resp
    return resp


def _create_tuple_topic_raw(raw, project, fields):
    """CreateTopic as the Go SDK sends it (datahub/requestmodel.go CreateTopicRequest)."""
    topic = unique_name("t")
    schema = json.dumps({"fields": fields})
    _ok(raw.post(_topic_path(project, topic), body={
        "Action": "create", "ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE",
        "RecordSchema": schema, "Comment": "go sdk shapes"}))
    return topic


# --------------------------------------------------------------------------------------------
# item 1: upper-case field types

def test_every_rendered_schema_has_upper_case_types(raw, dh, project):
    """GetTopic, ListSchema, GetSchema (by version) and AppendField as the Go SDK sends them
    (datahub/implement.go:688 AppendField, :1440 ListSchema, :1463 GetSchema); each response's
    RecordSchema is parsed by NewRecordSchemaFromJson (datahub/resultmodel.go:216, :1075, :1123),
    which panics unless every type is one of types.go:128's upper-case names. Input is accepted
    in any case. pydatahub (which lower-cases on read, models/schema.py from_json) still parses."""
    spellings = [t.lower() if i % 3 == 0 else t if i % 3 == 1 else t.capitalize() for i, t in enumerate(GO_TYPES)]
    fields = [{"name": "f%d" % i, "type": t} for i, t in enumerate(spellings)]
    topic = _create_tuple_topic_raw(raw, project, fields)
    path = _topic_path(project, topic)

    got = _ok(raw.get(path)).json()
    assert _schema_types(got["RecordSchema"]) == GO_TYPES

    _ok(raw.post(path, body={"Action": "AppendField", "FieldName": "extra", "FieldType": "STRING"}))
    _ok(raw.post(path, body={"Action": "AppendField", "FieldName": "extra2", "FieldType": "bigint"}))
    got = _ok(raw.get(path)).json()
    assert _schema_types(got["RecordSchema"]) == GO_TYPES + ["STRING", "BIGINT"]

    listed = _ok(raw.post(path, body={"Action": "ListSchema"})).json()
    assert len(listed["RecordSchemaList"]) == 3
    for entry in listed["RecordSchemaList"]:
        assert set(_schema_types(entry["RecordSchema"])) <= set(GO_TYPES), entry
    by_version = _ok(raw.post(path, body={"Action": "GetSchema", "VersionId": 0})).json()
    assert _schema_types(by_version["RecordSchema"]) == GO_TYPES

    # pydatahub parses the upper-case schemas (GetTopic and its schema registry's ListSchema).
    schema = dh.get_topic(project, topic).record_schema
    assert [f.type for f in schema.field_list] == [FieldType(t.lower()) for t in GO_TYPES + ["STRING", "BIGINT"]]
    listed = dh.list_topic_schema(project, topic)
    assert len(listed.record_schema_list) == 3
    for entry in listed.record_schema_list:
        RecordSchema.from_json_str(entry["RecordSchema"])


def test_go_schema_lookup_with_inverted_notnull_finds_the_version(raw, project):
    """The Go batch client finds a record's schema version with GetSchema + RecordSchema
    (datahub/binaryrecord.go:509 getVersionBySchema -> schemaclient.go:82 -> implement.go:1475),
    sending RecordSchema.String() (datahub/topic.go:58): upper-case types, comment omitted when
    empty, and "notnull" = !AllowNull -- but AllowNull carries the `json:"notnull"` tag
    (topic.go:11), so a schema read from GetTopic comes back with notnull inverted. The lookup
    must still find the version (else every Go batch TUPLE put fails); a schema with other
    columns is still unknown."""
    topic = _create_tuple_topic_raw(raw, project, [
        {"name": "id", "type": "BIGINT", "notnull": True},
        {"name": "name", "type": "STRING", "comment": "who"},
    ])
    path = _topic_path(project, topic)
    go_string = json.dumps({"fields": [
        {"name": "id", "type": "BIGINT"},
        {"name": "name", "type": "STRING", "notnull": True, "comment": "who"},
    ]}, separators=(",", ":"))
    got = _ok(raw.post(path, body={"Action": "GetSchema", "VersionId": -1, "RecordSchema": go_string})).json()
    assert got["VersionId"] == 0
    other = json.dumps({"fields": [{"name": "id", "type": "BIGINT"}, {"name": "name", "type": "DOUBLE"}]})
    resp = raw.post(path, body={"Action": "GetSchema", "VersionId": -1, "RecordSchema": other})
    assert resp.status == 400 and resp.error_code == "InvalidParameter", resp


# --------------------------------------------------------------------------------------------
# item 2: batch records without a field count; the batch compress codes of Go v0.2.x

def go_record(schema_version, cells, attrs=()):
    """One record as binaryrecord.go (v0.2.1) serializes it: header encodeType 1 (:30),
    schemaVersion, totalSize = 4 + attrLen + nextOffset (:97), attrOffset = nextOffset; then the
    field count, which is never written and stays 0 (:89, :73); the null bitmap (:158); one 8-byte
    slot per field; strings under 7 bytes inline with 0x80|len in the slot's last byte, longer
    ones as (offset - 16) << 32 | len with the bytes padded to 8 (:283-:307); then the attribute
    count and key/value pairs (:406-:421). cells: [(kind, value)], kind "int" or "bytes"."""
    n = len(cells)
    fixed = 16 + 4 + (((n + 63) >> 6) << 3)
    data = bytearray(fixed + 8 * n)
    for i, (kind, value) in enumerate(cells):
        if value is None:
            continue
        data[20 + (i >> 3)] |= 1 << (i & 7)
        slot = fixed + 8 * i
        if kind == "int":
            struct.pack_into("<q", data, slot, value)
            continue
        b = value.encode("utf-8") if isinstance(value, str) else value
        if len(b) < 7:
            data[slot:slot + len(b)] = b
            data[slot + 7] = 0x80 | len(b)
        else:
            struct.pack_into("<Q", data, slot, ((len(data) - 16) << 32) | len(b))
            data += b + b"\0" * (((len(b) + 7) & ~7) - len(b))
    attr_bytes = struct.pack("<i", len(attrs))
    for k, v in attrs:
        attr_bytes += struct.pack("<i", len(k)) + k.encode() + struct.pack("<i", len(v)) + v.encode()
    struct.pack_into("<iiii", data, 0, 1, schema_version, len(data) + len(attr_bytes), len(data))
    return bytes(data) + attr_bytes


# compress.go (v0.2.1) :54 toValue, masked with 3 in batchrecord.go:130; the payload compressor
# is the one named (DEFLATE and ZLIB both write a zlib stream, LZ4 a raw block, ZSTD a frame).
GO_BATCH_CODECS = {
    "none": (0, lambda raw: raw),
    "deflate": (1, zlib.compress),
    "lz4": (2, lambda raw: lz4.block.compress(raw, store_size=False)),
    "zlib": (3, zlib.compress),
    "zstd": (4 & 3, lambda raw: zstandard.ZstdCompressor().compress(raw)),
}


def go_batch(records, codec="none"):
    """batchrecord.go:104 serializeBatchRecord: "DHUB", version 0, length, rawSize, CRC-32C of
    the stored payload, attributes (the code only), record count."""
    raw = b"".join(records)
    code, compress = GO_BATCH_CODECS[codec]
    stored = compress(raw)
    header = b"DHUB" + struct.pack("<iiiIhi", 0, 26 + len(stored), len(raw), crc32c(stored), code, len(records))
    return header + stored


def go_put_batch(raw, project, topic, batch, shard="0"):
    """implement.go:1683 PutRecordsByShard (DataHubBatch): a PutBinaryRecordsRequest with one
    entry, framed by util.WrapMessage, Content-Type application/x-binary, action pub; the HTTP
    body itself is not compressed (datahub.go:21-24)."""
    body = pb_message_wrap(bytes(encode_data(PutBinaryRecordsRequest, {"records": [{"data": batch}]})))
    return raw.post(_topic_path(project, topic) + "/shards/" + shard, body=bytes(body),
                    headers={"x-datahub-request-action": "pub"}, content_type="application/x-binary")


@pytest.mark.parametrize("codec", sorted(GO_BATCH_CODECS))
def test_go_batch_tuple_records_without_field_count(raw, project, client_factory, codec):
    """Go v0.2.1 batch TUPLE put: field count 0, encodeType 1, attributes without pydatahub's 0x08
    bit, every compress code Go writes (ZSTD under code 0). Read back by pydatahub."""
    topic = _create_tuple_topic_raw(raw, project, [
        {"name": "id", "type": "BIGINT"}, {"name": "name", "type": "STRING"}])
    rows = [(-2, "datahub-rs"), (7, "short"), (None, None), (1 << 40, "x" * 300)]
    records = [go_record(0, [("int", a), ("bytes", b)], attrs=[("k", str(i))]) for i, (a, b) in enumerate(rows)]
    assert all(r[16:20] == b"\0\0\0\0" for r in records)
    _ok(go_put_batch(raw, project, topic, go_batch(records, codec)))
    schema = RecordSchema.from_lists(["id", "name"], [FieldType.BIGINT, FieldType.STRING])
    for protocol in ("json", "batch"):
        got = read_all(client_factory(protocol), project, topic, "0", schema)
        assert [list(r.values) for r in got] == [list(row) for row in rows], protocol
        assert [r.attributes for r in got] == [{"k": str(i)} for i in range(len(rows))]


def test_go_batch_blob_record_without_field_count(raw, dh, project, client_factory):
    """binaryrecord.go:498 blob2BinaryRecord: schemaVersion -1, one byte field, field count 0."""
    topic = create_blob_topic(dh, project)
    blobs = [b"hello", bytes(range(256))]
    records = [go_record(-1, [("bytes", b)]) for b in blobs]
    _ok(go_put_batch(raw, project, topic, go_batch(records, "zstd")))
    got = read_all(client_factory("batch"), project, topic, "0")
    assert [r.blob_data for r in got] == blobs


def test_go_batch_field_count_other_than_zero_or_schema_is_refused(raw, project):
    """Only 0 (Go v0.2.x) or the schema's count is accepted; anything else stays MalformedRecord."""
    topic = _create_tuple_topic_raw(raw, project, [
        {"name": "id", "type": "BIGINT"}, {"name": "name", "type": "STRING"}])
    record = bytearray(go_record(0, [("int", 1), ("bytes", "a")]))
    struct.pack_into("<i", record, 16, 3)
    resp = go_put_batch(raw, project, topic, go_batch([bytes(record)]))
    assert resp.status == 400 and resp.error_code == "MalformedRecord", resp


def test_go_zstd_batch_bomb_is_refused(raw, dh, project):
    """A zstd payload that inflates far past its declared raw size is cut off at raw_size."""
    topic = create_blob_topic(dh, project)
    stored = zstandard.ZstdCompressor(level=19).compress(b"\0" * (32 << 20))
    batch = b"DHUB" + struct.pack("<iiiIhi", 0, 26 + len(stored), 64, crc32c(stored), 0, 1) + stored
    resp = go_put_batch(raw, project, topic, batch)
    assert resp.status == 400 and resp.error_code == "MalformedRecord", resp
    assert "zstd" in resp.json()["ErrorMessage"].lower(), resp


# --------------------------------------------------------------------------------------------
# item 3: zstd request bodies (restclient.go:278 compressIfNeed: Content-Encoding and
# Accept-Encoding are the compressor's name, x-datahub-content-raw-size the raw length)

def _go_zstd_headers(raw_body):
    return {"Content-Encoding": "zstd", "Accept-Encoding": "zstd", "x-datahub-content-raw-size": len(raw_body)}


def test_zstd_json_put(raw, dh, project, client_factory):
    """Go v0.2.1 JSON PutRecords (requestmodel.go PutRecordsRequest) with CompressorType ZSTD."""
    topic = create_blob_topic(dh, project)
    blobs = [b"zstd json %d " % i * 20 for i in range(5)]
    body = json.dumps({"Action": "pub", "Records": [
        {"ShardId": "0", "Data": base64.b64encode(b).decode(), "Attributes": {"i": str(i)}}
        for i, b in enumerate(blobs)]}).encode()
    resp = raw.post(_topic_path(project, topic) + "/shards", body=zstandard.ZstdCompressor().compress(body),
                    headers=_go_zstd_headers(body))
    _ok(resp)
    assert resp.json().get("FailedRecordCount", 0) == 0, resp
    got = read_all(client_factory("json"), project, topic, "0")
    assert [r.blob_data for r in got] == blobs
    assert [r.attributes for r in got] == [{"i": str(i)} for i in range(5)]


def test_zstd_protobuf_put(raw, dh, project, client_factory):
    """Go v0.2.1 DataHubPB PutRecords (application/x-protobuf, framed PutRecordsRequest) with
    CompressorType ZSTD: the whole framed body is zstd-compressed."""
    topic = create_blob_topic(dh, project)
    recs = []
    for i in range(4):
        rec = BlobRecord(blob_data=b"zstd pb %d " % i * 30)
        rec.shard_id = "0"
        recs.append(rec)
    body = bytes(PutPBRecordsRequestParams(recs).content())
    resp = raw.post(_topic_path(project, topic) + "/shards", body=zstandard.ZstdCompressor().compress(body),
                    headers=dict(_go_zstd_headers(body), **{"x-datahub-request-action": "pub"}),
                    content_type="application/x-protobuf")
    _ok(resp)
    got = read_all(client_factory("pb"), project, topic, "0")
    assert [r.blob_data for r in got] == [r.blob_data for r in recs]


def test_zstd_body_errors(raw, dh, project):
    """A zstd body that is corrupt, lies about its raw size, or inflates past max_request_bytes
    (8 MiB by default) is refused with a DataHub error, not a crash or a huge allocation."""
    topic = create_blob_topic(dh, project)
    path = _topic_path(project, topic) + "/shards"
    body = json.dumps({"Action": "pub", "Records": [{"ShardId": "0", "Data": "aGVsbG8="}]}).encode()
    good = zstandard.ZstdCompressor().compress(body)
    bomb = zstandard.ZstdCompressor(level=19).compress(b" " * (64 << 20))
    cases = [
        (good[:-6], {"x-datahub-content-raw-size": len(body)}),
        (good, {"x-datahub-content-raw-size": len(body) + 1}),
        (b"\x28\xb5\x2f\xfd" + b"\xff" * 40, {}),
        (bomb, {}),
    ]
    for payload, extra in cases:
        resp = raw.post(path, body=payload, headers=dict({"Content-Encoding": "zstd"}, **extra))
        assert resp.status == 400 and resp.error_code == "InvalidParameter", resp
        assert "zstd" in resp.json()["ErrorMessage"], resp
