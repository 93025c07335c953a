"""Batch version 1 of the Go SDK v1.x (aliyun-datahub-sdk-go HEAD 543cc08), sent and read as raw
signed HTTP (issue 8, "look for more of the same kind"; docs/sdk-wire.md "Go SDK batch version
1"). The SDK cannot be built here: each helper cites the source it reproduces.

A Go v1.x batch client writes a 40-byte header (batch_serializer.go:75-89, values :136-148) and
Avro records whose schema comes from the topic schema (avro_helper.go:29-130), encoded by
hamba/avro v2.28.0. Sluice stores them as version 0, so pydatahub reads them back in every
protocol; and it answers a Go v1.x batch read (told apart by its User-Agent, config.go
DefaultUserAgent) with version-1 batches, the only ones that reader parses
(batch_serializer.go:313)."""

import decimal
import json
import struct
import zlib

import crcmod.predefined
import lz4.block
import pytest
import zstandard
from cprotobuf.internal import encode_data
from datahub.models import CursorType, FieldType, TupleRecord
from datahub.models.params import GetBatchRecordsRequestParams
from datahub.proto.datahub_record_proto_pb import GetBinaryRecordsResponse, PutBinaryRecordsRequest
from datahub.utils import pb_message_wrap, unwrap_pb_frame

from util import blob_records, create_blob_topic, cursor_of, put, read_all, unique_name

crc32c = crcmod.predefined.mkCrcFun("crc-32c")

# config.go:53-56 DefaultUserAgent at HEAD ("godatahub/" + DATAHUB_SDK_VERSION "v1.2.0-beta", version.go)
GO_HEAD_UA = "godatahub/v1.2.0-beta go1.22.1@linux#10.1.2.3#4242"
# v0.2.1 config.go DefaultUserAgent: reads version 0 batches only.
GO_V02_UA = "godatahub/0.2.1 golang/go1.20 linux"

# A topic with every field type; notnull as the Go SDK sends it in CreateTopic (topic.go:11).
FIELDS = [
    ("id", "BIGINT", True), ("name", "STRING", False), ("ok", "BOOLEAN", False), ("score", "DOUBLE", False),
    ("ts", "TIMESTAMP", True), ("price", "DECIMAL", False), ("n", "INTEGER", False), ("f", "FLOAT", False),
    ("t", "TINYINT", False), ("s", "SMALLINT", False),
]
ROWS = [
    (1, "datahub", True, 0.5, 1700000000000000, decimal.Decimal("1.25"), -7, 1.5, -128, 32767),
    (-(1 << 40), None, None, None, 0, None, None, None, None, None),
    (64, "x" * 300, False, -1e300, 1, decimal.Decimal("-0.001"), 2147483647, -0.25, 127, -32768),
]
ATTRS = [{}, {"k": "v"}, {"a": "1", "b": "2"}]

# avro_helper.go:29-47 getAvroColumnSchema
AVRO_TYPE = {"BOOLEAN": "boolean", "TINYINT": "int", "SMALLINT": "int", "INTEGER": "int", "BIGINT": "long",
             "TIMESTAMP": "long", "FLOAT": "float", "DOUBLE": "double", "STRING": "string", "DECIMAL": "string"}


def zigzag(n):
    """An Avro int/long: zigzag, then 7 bits per byte, low first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_bytes(b):
    return zigzag(len(b)) + b


def avro_value(field_type, v):
    """data_serializer.go:115-143 getColumnValue: ints as int32/int64, DECIMAL as its text."""
    kind = AVRO_TYPE[field_type]
    if kind == "boolean":
        return b"\x01" if v else b"\x00"
    if kind in ("int", "long"):
        return zigzag(v)
    if kind == "float":
        return struct.pack("<f", v)
    if kind == "double":
        return struct.pack("<d", v)
    return avro_bytes(str(v).encode("utf-8"))


def go_attributes(attrs):
    """`__dh_attribute__`, union [null, map<string>] (avro_helper.go:66-80), set to
    {"map": attrs or nil} (data_serializer.go:90-95): always branch 1; hamba writes a map block as
    a negative count, the block's byte size, the entries (writer.go:161-168), then a 0 count."""
    if not attrs:
        return b"\x02\x00"
    block = b"".join(avro_bytes(k.encode()) + avro_bytes(v.encode()) for k, v in attrs.items())
    return b"\x02" + zigzag(-len(attrs)) + zigzag(len(block)) + block + b"\x00"


def go_tuple_record(fields, row, attrs):
    """A nullable field is the union [null, T] (avro_helper.go:49-64): index 0 for null, 1 + value."""
    out = b""
    for (_, field_type, notnull), v in zip(fields, row):
        if notnull:
            out += avro_value(field_type, v)
        elif v is None:
            out += b"\x00"
        else:
            out += b"\x02" + avro_value(field_type, v)
    return out + go_attributes(attrs)


def go_blob_record(data, attrs):
    """BLOB: one field `data` of type bytes (avro_helper.go:95-104), then the attributes."""
    return avro_bytes(data) + go_attributes(attrs)


# compress.go:69-82 toValue (the code in attribute bits 0-1) and the compressors (:93-191):
# DEFLATE and ZLIB both write a zlib stream, but ZLIB has no value of its own and goes under 0.
GO_V1_CODECS = {
    "none": (0, lambda raw: raw),
    "deflate": (1, zlib.compress),
    "lz4": (2, lambda raw: lz4.block.compress(raw, store_size=False)),
    "zstd": (3, lambda raw: zstandard.ZstdCompressor().compress(raw)),
    "zlib": (0, zlib.compress),
}


def go_v1_batch(records, schema_version, columns, codec="none"):
    """batch_serializer.go:109-159 serialize: "DHUB", version 1, length, rawSize, CRC-32C of the
    stored bytes (utils.go:16-19), attribute (compression code), dataType 2 (Avro), schema
    version (-1 for BLOB, schemaclient.go:17), dataOffset 40, record count, column count."""
    raw = b"".join(records)
    code, compress = GO_V1_CODECS[codec]
    stored = compress(raw)
    header = b"DHUB" + struct.pack("<iiiIhhiiii", 1, 40 + len(stored), len(raw), crc32c(stored), code, 2,
                                   schema_version, 40, len(records), columns)
    return header + stored


def _shard_path(project, topic, shard="0"):
    return "/projects/%s/topics/%s/shards/%s" % (project, topic, shard)


def go_put(raw, project, topic, batch):
    """implement.go:1505-1534 PutRecordsByShard (DataHubBatch): one BinaryRecordEntry in a
    PutBinaryRecordsRequest, framed (requestmodel.go:834-852), Content-Type application/x-binary,
    action pub."""
    body = pb_message_wrap(bytes(encode_data(PutBinaryRecordsRequest, {"records": [{"data": batch}]})))
    return raw.post(_shard_path(project, topic), body=bytes(body), content_type="application/x-binary",
                    headers={"x-datahub-request-action": "pub", "User-Agent": GO_HEAD_UA})


def go_get(raw, project, topic, cursor, user_agent=GO_HEAD_UA, limit=100):
    """implement.go:1536-1568 GetTupleRecords (DataHubBatch): a GetRecordsRequest, action sub,
    Content-Type application/x-binary; the answer is a framed GetBinaryRecordsResponse
    (resultmodel.go:657-703)."""
    body = bytes(GetBatchRecordsRequestParams(cursor, limit).content())
    resp = raw.post(_shard_path(project, topic), body=body, content_type="application/x-binary",
                    headers={"x-datahub-request-action": "sub", "User-Agent": user_agent})
    assert resp.status == 200, resp
    crc, computed, pb = unwrap_pb_frame(resp.body)
    assert crc == computed
    answer = GetBinaryRecordsResponse()
    answer.ParseFromString(pb)
    return answer


def _create_go_topic(raw, project, fields=FIELDS):
    """CreateTopic as Go sends it (requestmodel.go CreateTopicRequest; topic.go:58-78 String())."""
    topic = unique_name("t")
    schema = {"fields": [dict({"name": n, "type": t}, **({"notnull": True} if nn else {})) for n, t, nn in fields]}
    resp = raw.post("/projects/%s/topics/%s" % (project, topic), body={
        "Action": "create", "ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE",
        "RecordSchema": json.dumps(schema), "Comment": "go v1 batch"})
    assert resp.status == 201 or resp.status == 200, resp
    return topic


def _expected(row, protocol):
    """A NULL STRING reads back as '' over PB (pydatahub cannot tell them apart, util.expected_row)."""
    return ["" if v is None and protocol == "pb" and t == "STRING" else v for v, (_, t, _) in zip(row, FIELDS)]


@pytest.mark.parametrize("codec", sorted(GO_V1_CODECS))
def test_go_v1_tuple_batch_put_reads_back_in_every_protocol(raw, dh, project, client_factory, codec):
    """A Go HEAD batch put of a TUPLE topic with every field type, nulls and attributes, under each
    compression Go writes. pydatahub reads the same values in JSON, protobuf and batch."""
    topic = _create_go_topic(raw, project)
    records = [go_tuple_record(FIELDS, row, attrs) for row, attrs in zip(ROWS, ATTRS)]
    resp = go_put(raw, project, topic, go_v1_batch(records, 0, len(FIELDS), codec))
    assert resp.status == 200, resp
    schema = dh.get_topic(project, topic).record_schema
    for protocol in ("json", "pb", "batch"):
        got = read_all(client_factory(protocol), project, topic, "0", schema)
        assert [list(r.values) for r in got] == [_expected(row, protocol) for row in ROWS], protocol
        assert [r.attributes for r in got] == ATTRS, protocol


def test_go_v1_blob_batch_put_reads_back(raw, dh, project, client_factory):
    """BLOB: schema version -1, column count 0 (batch_serializer.go:131-134), zstd."""
    topic = create_blob_topic(dh, project)
    blobs = [b"hello", bytes(range(256)) * 4, b"x"]
    records = [go_blob_record(b, a) for b, a in zip(blobs, ATTRS)]
    resp = go_put(raw, project, topic, go_v1_batch(records, -1, 0, "zstd"))
    assert resp.status == 200, resp
    for protocol in ("json", "batch"):
        got = read_all(client_factory(protocol), project, topic, "0")
        assert [r.blob_data for r in got] == blobs, protocol
        assert [r.attributes for r in got] == ATTRS, protocol


def test_damaged_go_v1_batches_are_refused(raw, dh, project, client_factory):
    """A version-1 batch with a wrong CRC, another data type, an unknown schema version, more
    columns than the version has, or a value out of range (TINYINT 300) is MalformedRecord, and
    nothing is stored."""
    topic = _create_go_topic(raw, project)
    records = [go_tuple_record(FIELDS, ROWS[0], {})]
    good = go_v1_batch(records, 0, len(FIELDS))

    def patched(at, fmt, value):
        b = bytearray(good)
        struct.pack_into(fmt, b, at, value)
        return bytes(b)

    bad_tiny = go_tuple_record(FIELDS, ROWS[0][:8] + (300,) + ROWS[0][9:], {})
    for batch in [patched(16, "<I", 12345), patched(22, "<h", 1), patched(24, "<i", 9),
                  patched(36, "<i", len(FIELDS) + 1), go_v1_batch([bad_tiny], 0, len(FIELDS))]:
        resp = go_put(raw, project, topic, batch)
        assert resp.status == 400 and resp.error_code == "MalformedRecord", resp
    assert read_all(client_factory("json"), project, topic, "0") == []


def _avro_reader(data):
    pos = [0]

    def long():
        shift, z = 0, 0
        while True:
            b = data[pos[0]]
            pos[0] += 1
            z |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (z >> 1) ^ -(z & 1)

    def take(n):
        out = data[pos[0]:pos[0] + n]
        pos[0] += n
        return out

    return pos, long, take


def decode_go_v1(batch, fields):
    """What Go HEAD's reader does with a batch (batch_serializer.go:235-317, data_serializer.go
    :149-180), in Python: header checks, decompression by code, then Avro records of the
    version's schema. Returns (header fields, [(values, attributes)])."""
    magic, version, length, raw_size, crc, attribute, data_type, schema_version, data_offset, count = \
        struct.unpack_from("<4siiiIhhiii", batch)
    assert magic == b"DHUB" and version == 1 and data_type == 2, (magic, version, data_type)
    assert length == len(batch)
    assert 36 <= data_offset <= len(batch)
    stored = batch[data_offset:]
    assert crc == 0 or crc == crc32c(stored)
    code = attribute & 3
    raw = {0: lambda: stored, 1: lambda: zlib.decompress(stored),
           2: lambda: lz4.block.decompress(stored, uncompressed_size=raw_size),
           3: lambda: zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)}[code]()
    assert len(raw) == raw_size
    pos, long, take = _avro_reader(raw)
    out = []
    for _ in range(count):
        values = []
        for _, field_type, notnull in (fields or []):
            if not notnull and long() == 0:
                values.append(None)
                continue
            kind = AVRO_TYPE[field_type]
            if kind == "boolean":
                values.append(take(1) == b"\x01")
            elif kind in ("int", "long"):
                values.append(long())
            elif kind == "float":
                values.append(struct.unpack("<f", take(4))[0])
            elif kind == "double":
                values.append(struct.unpack("<d", take(8))[0])
            else:
                text = take(long()).decode("utf-8")
                values.append(decimal.Decimal(text) if field_type == "DECIMAL" else text)
        if fields is None:
            values.append(take(long()))
        attrs = {}
        if long() == 1:
            while True:
                n = long()
                if n == 0:
                    break
                if n < 0:
                    long()
                for _ in range(abs(n)):
                    k = take(long()).decode()
                    attrs[k] = take(long()).decode()
        out.append((values, attrs))
    assert pos[0] == len(raw)
    return {"schema_version": schema_version, "data_offset": data_offset, "count": count}, out


def _pydatahub_rows(schema, rows):
    records = []
    for row, attrs in rows:
        r = TupleRecord(schema=schema, values=list(row))
        for k, v in attrs.items():
            r.put_attribute(k, v)
        records.append(r)
    return records


@pytest.mark.parametrize("writer", ["json", "batch", "go-v1"])
def test_go_v1_reader_gets_version_1_batches(raw, dh, project, client_factory, writer):
    """A batch read with Go HEAD's User-Agent gets version-1 batches (36-byte header, data type
    2, LZ4 when smaller) that decode, as Go's reader decodes them, to what was written by
    pydatahub (JSON or batch) or by Go itself; cursors chain to the end. The same read with Go
    v0.2.1's User-Agent still gets version 0 batches."""
    topic = _create_go_topic(raw, project)
    schema = dh.get_topic(project, topic).record_schema
    # pydatahub's batch writer cannot write a NULL DOUBLE (datahub/batch/utils.py double2byte).
    rows = [(row, attrs) for row, attrs in zip(ROWS, ATTRS) if writer != "batch" or None not in row]
    if writer == "go-v1":
        records = [go_tuple_record(FIELDS, row, attrs) for row, attrs in rows]
        assert go_put(raw, project, topic, go_v1_batch(records, 0, len(FIELDS), "lz4")).status == 200
    else:
        put(client_factory(writer), writer, project, topic, _pydatahub_rows(schema, rows))
    cursor = cursor_of(dh, project, topic, "0", CursorType.OLDEST)
    got, entries = [], 0
    for _ in range(10):
        answer = go_get(raw, project, topic, cursor, limit=2)
        if answer.record_count == 0:
            break
        for entry in answer.records:
            header, decoded = decode_go_v1(entry.data, FIELDS)
            assert header["data_offset"] == 36 and header["schema_version"] == 0, header
            got.extend(decoded)
            entries += 1
        cursor = answer.next_cursor
    assert [values for values, _ in got] == [list(row) for row, _ in rows]
    assert [attrs for _, attrs in got] == [attrs for _, attrs in rows]
    assert entries >= 1
    # Go v0.2.1 (and anything else) gets the stored version-0 batches.
    old = go_get(raw, project, topic, cursor_of(dh, project, topic, "0", CursorType.OLDEST), GO_V02_UA)
    assert old.record_count >= 1
    assert all(struct.unpack_from("<i", e.data, 4)[0] == 0 for e in old.records)


def test_go_v1_reader_after_append_field_gets_each_version(raw, dh, project):
    """Records written before and after AppendField come back under their own schema versions
    (one version per batch), which Go HEAD's reader resolves through ListTopicSchema
    (schemaclient.go:198-254): the first under version 0 with 2 fields, the next under 1 with 3."""
    fields = [("id", "BIGINT", True), ("name", "STRING", False)]
    topic = _create_go_topic(raw, project, fields)
    assert go_put(raw, project, topic, go_v1_batch([go_tuple_record(fields, (1, "a"), {})], 0, 2)).status == 200
    dh.append_field(project, topic, "extra", FieldType.BIGINT)
    fields3 = fields + [("extra", "BIGINT", False)]
    resp = go_put(raw, project, topic, go_v1_batch([go_tuple_record(fields3, (2, None, 9), {})], 1, 3))
    assert resp.status == 200, resp
    answer = go_get(raw, project, topic, cursor_of(dh, project, topic, "0", CursorType.OLDEST))
    decoded = []
    for e in answer.records:
        version = struct.unpack_from("<i", e.data, 24)[0]
        decoded.append((version, decode_go_v1(e.data, fields if version == 0 else fields3)[1]))
    assert decoded == [(0, [([1, "a"], {})]), (1, [([2, None, 9], {})])]


def test_go_v1_reader_gets_blob_batches(raw, dh, project, client_factory):
    """BLOB records written by pydatahub come back to a Go HEAD reader as version-1 batches of
    schema version -1 whose Avro records are `data` bytes and attributes (avro_helper.go:95-104)."""
    topic = create_blob_topic(dh, project)
    blobs = [b"hello", bytes(range(256)) * 8]
    put(client_factory("batch"), "batch", project, topic, blob_records(blobs, lambda i: {"i": str(i)}))
    answer = go_get(raw, project, topic, cursor_of(dh, project, topic, "0", CursorType.OLDEST))
    got = []
    for entry in answer.records:
        header, decoded = decode_go_v1(entry.data, None)
        assert header["schema_version"] == -1, header
        got.extend(decoded)
    assert got == [([b], {"i": str(i)}) for i, b in enumerate(blobs)]
