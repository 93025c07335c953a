"""Shared helpers of the conformance suite: names, schemas, value sets, put/read helpers."""

import hashlib
import itertools
import random
import time
import uuid
from decimal import Decimal

import pytest
from datahub import DataHub
from datahub.core import DatahubProtocolType
from datahub.exceptions import ShardSealedException
from datahub.models import BlobRecord, CompressFormat, CursorType, FieldType, RecordSchema, TupleRecord

ACCESS_ID = "sluiceCompatId"
ACCESS_KEY = "sluiceCompatKey0123456789"
USER_AGENT = "pydatahub/2.29.0 sluice-compat"

PROTOCOLS = {
    "json": DatahubProtocolType.JSON,
    "pb": DatahubProtocolType.PB,
    "batch": DatahubProtocolType.BATCH,
}
COMPRESSIONS = {
    "none": CompressFormat.NONE,
    "lz4": CompressFormat.LZ4,
    "zlib": CompressFormat.ZLIB,
    "deflate": CompressFormat.DEFLATE,
}
# every protocol x compression, as pytest params with ids like "pb-zlib"
MATRIX = [pytest.param((p, c), id="%s-%s" % (p, c)) for p, c in itertools.product(PROTOCOLS, COMPRESSIONS)]

MAX_HASH = (1 << 128) - 1


def make_client(endpoint, protocol="json", compress="lz4", access_id=ACCESS_ID, access_key=ACCESS_KEY, **kw):
    """A pydatahub client. protocol: json|pb|batch; compress: none|lz4|zlib|deflate."""
    kw.setdefault("user_agent", USER_AGENT)  # also avoids the SDK's UDP probe of a public address
    return DataHub(access_id, access_key, endpoint, compress_format=COMPRESSIONS[compress],
                   protocol_type=PROTOCOLS[protocol], **kw)
NO_NEIGHBOUR = "4294967295"


def unique_name(prefix):
    """A fresh DataHub name (^[a-zA-Z][a-zA-Z0-9_]*$, ≤ 32 chars so it also fits projects)."""
    return "%s_%s" % (prefix, uuid.uuid4().hex[:20])


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# schemas and values

ALL_TYPES = [
    ("f_bigint", FieldType.BIGINT),
    ("f_string", FieldType.STRING),
    ("f_double", FieldType.DOUBLE),
    ("f_boolean", FieldType.BOOLEAN),
    ("f_timestamp", FieldType.TIMESTAMP),
    ("f_decimal", FieldType.DECIMAL),
    ("f_integer", FieldType.INTEGER),
    ("f_smallint", FieldType.SMALLINT),
    ("f_tinyint", FieldType.TINYINT),
    ("f_float", FieldType.FLOAT),
]
STRING_INDEX = 1


def all_types_schema(allow_null=True):
    names = [n for n, _ in ALL_TYPES]
    types = [t for _, t in ALL_TYPES]
    comments = ["comment of %s" % n for n in names]
    return RecordSchema.from_lists(names, types, comments, [allow_null] * len(names))


LONG_TEXT = ("The quick brown fox \"jumps\" over the lazy dog\\ \n\t" * 6) + "ünïcødé ✓ 中文 🚀"

# Rows without NULLs (every writer can send these). FLOAT values are exactly representable as
# f32 and print the same in any shortest form, so every protocol must return them unchanged.
ROWS = [
    [2 ** 63 - 1, "héllo wörld ✓ 中文 🚀", 1.7976931348623157e308, True, 253402271999000000,
     Decimal("1234567890.0123456789"), 2 ** 31 - 1, 32767, 127, 16777216.0],
    [-2 ** 63, "", -5e-324, False, -62135798400000000, Decimal("-0.000001"), -2 ** 31, -32768, -128, -2.25],
    [0, LONG_TEXT, 0.1, True, 0, Decimal("0"), 0, 0, 0, 0.0],
    [42, "x" * 7, 3.141592653589793, False, 1700000000000000, Decimal("1E+2"), 7, -1, -1, 0.125],
    [-1, "a\"b\\c\n\td\u0001e", -1e100, True, 1455869335000000, Decimal("3.14159"), -7, 255, 1, 1024.5],
]
NULL_ROW = [None] * len(ALL_TYPES)

ATTRS_ASCII = {"k": "v", "source": "sluice-compat"}
# pydatahub's batch writer miscounts non-ASCII attributes (protocol doc §6.7): only JSON/PB use these.
ATTRS_UNICODE = {"k": "v", "ключ": "значение ✓", "empty": ""}


def rows_for(protocol):
    """Rows a writer of `protocol` can send: batch writers cannot send NULLs (§6.7)."""
    if protocol == "batch":
        return [list(r) for r in ROWS]
    return [list(r) for r in ROWS] + [list(NULL_ROW)]


def attrs_for(protocol, i):
    base = ATTRS_ASCII if protocol == "batch" else ATTRS_UNICODE
    attrs = dict(base)
    attrs["i"] = str(i)
    return attrs


def expected_row(row, reader):
    """What a reader of protocol `reader` must see for a written row: a NULL STRING reads back as
    '' over PB (pydatahub cannot tell them apart there, protocol doc §5.2)."""
    out = list(row)
    if reader == "pb" and out[STRING_INDEX] is None:
        out[STRING_INDEX] = ""
    return out


def tuple_records(schema, rows, attrs=None):
    recs = []
    for i, row in enumerate(rows):
        rec = TupleRecord(schema=schema, values=row)
        for k, v in (attrs(i) if callable(attrs) else (attrs or {})).items():
            rec.put_attribute(k, v)
        recs.append(rec)
    return recs


BLOBS = [
    b"hello",
    bytes(range(256)),
    random.Random(7).randbytes(3000),
    b"\x00",
    "ünïcødé ✓".encode("utf-8"),
]


def blob_records(blobs, attrs=None):
    recs = []
    for i, data in enumerate(blobs):
        rec = BlobRecord(blob_data=data)
        for k, v in (attrs(i) if callable(attrs) else (attrs or {})).items():
            rec.put_attribute(k, v)
        recs.append(rec)
    return recs


# --------------------------------------------------------------------------------------------
# topics

def create_tuple_topic(dh, project, schema=None, shards=1, lifecycle=7, comment="compat tuple topic",
                       extend_mode=None, prefix="t"):
    name = unique_name(prefix)
    schema = schema or all_types_schema()
    if extend_mode is None:
        dh.create_tuple_topic(project, name, shards, lifecycle, schema, comment)
    else:
        dh.create_tuple_topic(project, name, shards, lifecycle, schema, comment, extend_mode)
    dh.wait_shards_ready(project, name, 10)
    return name


def create_blob_topic(dh, project, shards=1, lifecycle=7, comment="compat blob topic", extend_mode=None,
                      prefix="b"):
    name = unique_name(prefix)
    if extend_mode is None:
        dh.create_blob_topic(project, name, shards, lifecycle, comment)
    else:
        dh.create_blob_topic(project, name, shards, lifecycle, comment, extend_mode)
    dh.wait_shards_ready(project, name, 10)
    return name


# --------------------------------------------------------------------------------------------
# put / get

def put(client, protocol, project, topic, records, shard_id="0"):
    """Write `records` to one shard: put_records with ShardId (JSON, PB) or put_records_by_shard
    (batch). Asserts that no record failed."""
    if protocol == "batch":
        client.put_records_by_shard(project, topic, shard_id, records)
        return
    for rec in records:
        rec.shard_id = shard_id
    result = client.put_records(project, topic, records)
    assert result.failed_record_count == 0, [(f.index, f.error_code, f.error_message) for f in result.failed_records]
    assert result.failed_records == []


def get_records(client, project, topic, shard_id, cursor, limit, schema=None):
    if schema is None:
        return client.get_blob_records(project, topic, shard_id, cursor, limit)
    return client.get_tuple_records(project, topic, shard_id, schema, cursor, limit)


def cursor_of(client, project, topic, shard_id, kind=CursorType.OLDEST, param=-1):
    return client.get_cursor(project, topic, shard_id, kind, param).cursor


def read_pages(client, project, topic, shard_id, schema=None, limit=1000, cursor=None, max_pages=10000):
    """Page through a shard from `cursor` (default OLDEST) until a read returns nothing, or the
    shard is closed and finished (ShardSealedException). Returns (records, pages)."""
    if cursor is None:
        cursor = cursor_of(client, project, topic, shard_id)
    records, pages = [], []
    for _ in range(max_pages):
        try:
            result = get_records(client, project, topic, shard_id, cursor, limit, schema)
        except ShardSealedException:
            break
        assert result.record_count == len(result.records), \
            "RecordCount %d != number of records %d" % (result.record_count, len(result.records))
        assert isinstance(result.next_cursor, str) and result.next_cursor, "empty NextCursor"
        if not result.records:
            break
        pages.append(result)
        records.extend(result.records)
        cursor = result.next_cursor
    else:
        raise AssertionError("shard never ran out of records")
    return records, pages


def read_all(client, project, topic, shard_id, schema=None, limit=1000, cursor=None):
    return read_pages(client, project, topic, shard_id, schema, limit, cursor)[0]


def values(rec):
    return list(rec.values)


# --------------------------------------------------------------------------------------------
# hash keys

def hex32(n):
    return "%032X" % n


def md5_key(partition_key):
    return int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)


def shard_for_key(shards, key):
    """The ACTIVE shard whose [begin, end) range holds `key` (the last range includes MAX)."""
    for s in shards:
        if s.state.value != "ACTIVE":
            continue
        begin, end = int(s.begin_hash_key, 16), int(s.end_hash_key, 16)
        if begin <= key < end or (end == MAX_HASH and key == MAX_HASH):
            return s.shard_id
    raise AssertionError("no ACTIVE shard holds key %s" % hex32(key))


def assert_rows_equal(got_rows, want_rows, names=None):
    """Row-by-row, field-by-field equality with a precise message; booleans must be booleans and
    NULL must stay NULL (None == None only)."""
    names = names or [n for n, _ in ALL_TYPES]
    assert len(got_rows) == len(want_rows), "got %d rows, want %d: %r" % (len(got_rows), len(want_rows), got_rows)
    for i, (got, want) in enumerate(zip(got_rows, want_rows)):
        assert len(got) == len(want), "row %d: got %d fields, want %d" % (i, len(got), len(want))
        for j, (g, w) in enumerate(zip(got, want)):
            field = names[j] if j < len(names) else str(j)
            ok = (g is None and w is None) or (g is not None and w is not None and g == w)
            if isinstance(w, bool) or isinstance(g, bool):
                ok = ok and type(g) is type(w)
            assert ok, "row %d field %s: got %r, want %r" % (i, field, g, w)


def wait_for(predicate, what, timeout=60.0, interval=0.1):
    """Polls until `predicate()` returns True; anything else it returns is shown on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))
