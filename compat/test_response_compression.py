"""Compressed get-records responses (issue 8 item 8, protocol doc §1.7, docs/sdk-wire.md
"Response compression"): Sluice compresses JSON, protobuf and batch get-records answers with an
encoding the request's Accept-Encoding names (lz4, zlib, zstd), when that makes them smaller and
they are at least 256 bytes, always with x-datahub-content-raw-size; never with anything the
client did not name, and never `deflate` (pydatahub would pass it through undecoded)."""

import json

import pytest
from datahub.models import CursorType
from datahub.models.params import GetBatchRecordsRequestParams, GetPBRecordsRequestParams

from util import create_blob_topic, cursor_of, put, blob_records

# Compressible records, large enough that every get-records answer is well over 256 bytes.
BLOBS = [(b"sluice response compression record %d; " % i) * 8 for i in range(20)]


def _shard_path(project, topic):
    return "/projects/%s/topics/%s/shards/0" % (project, topic)


class _Wire:
    """Records the wire form of every response a pydatahub client receives (a requests hook on
    the client's session: `DataHub._datahub_impl._rest_client._session`, datahub/rest.py:175)."""

    def __init__(self, client):
        self.seen = []
        client._datahub_impl._rest_client._session.hooks["response"].append(self._hook)

    def _hook(self, resp, *args, **kwargs):
        self.seen.append((resp.request.headers.get("Accept-Encoding"), resp.headers.get("Content-Encoding"),
                          resp.headers.get("x-datahub-content-raw-size"), len(resp.content)))


@pytest.mark.parametrize("compress", ["lz4", "zlib"])
@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_pydatahub_reads_compressed_records(dh, project, client_factory, protocol, compress):
    """pydatahub 2.29.0 with compress_format LZ4 / ZLIB sends `Accept-Encoding: <name>`
    (datahub/rest.py __compress_content) and decodes the answer by its Content-Encoding
    (rest.py:259 __decompress_response): the get-records answer arrives compressed, smaller than
    its declared raw size, and every record reads back exactly."""
    topic = create_blob_topic(dh, project)
    client = client_factory(protocol, compress)
    put(client, protocol, project, topic, blob_records(BLOBS, lambda i: {"i": str(i)}))
    cursor = cursor_of(client, project, topic, "0", CursorType.OLDEST)
    wire = _Wire(client)
    got = client.get_blob_records(project, topic, "0", cursor, 100).records
    assert [r.blob_data for r in got] == BLOBS
    assert [r.attributes for r in got] == [{"i": str(i)} for i in range(len(BLOBS))]
    assert len(wire.seen) == 1, wire.seen
    accept, encoding, raw_size, wire_len = wire.seen[0]
    assert accept == compress
    assert encoding == compress, wire.seen
    assert raw_size is not None and wire_len < int(raw_size), wire.seen


def _put_blobs(dh, project):
    topic = create_blob_topic(dh, project)
    put(dh, "json", project, topic, blob_records(BLOBS))
    return topic, cursor_of(dh, project, topic, "0", CursorType.OLDEST)


def _get_requests(cursor):
    """Get-records request bodies in the three shapes (JSON, PB, batch), as
    (content type, extra headers, body)."""
    sub = {"x-datahub-request-action": "sub"}
    return {
        "json": ("application/json", {}, json.dumps({"Action": "sub", "Cursor": cursor, "Limit": 100})),
        "pb": ("application/x-protobuf", sub, bytes(GetPBRecordsRequestParams(cursor, 100).content())),
        "batch": ("application/x-binary", sub, bytes(GetBatchRecordsRequestParams(cursor, 100).content())),
    }


def _get(raw, project, topic, shape, accept):
    content_type, headers, body = shape
    hdrs = dict(headers)
    drop = ()
    if accept is None:
        drop = ("Accept-Encoding",)  # no header at all
    else:
        hdrs["Accept-Encoding"] = accept
    resp = raw.post(_shard_path(project, topic), body=body, headers=hdrs, content_type=content_type,
                    drop_headers=drop)
    assert resp.status == 200, resp
    return resp


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_content_encoding_only_when_asked(raw, dh, project, protocol):
    """Raw signed get-records in each protocol. Accept-Encoding `lz4`, `zlib` (pydatahub,
    rest.py __compress_content; Java client Lz4RequestInterceptor.java:39) and `zstd` (Go v0.2.1
    restclient.go:284 sends the compressor's name; restclient.go:303-319 and compress.go:180 decode
    a zstd answer) get that Content-Encoding with the raw size; the decoded body equals the
    uncompressed answer byte for byte. No header, an empty one, `gzip`, `br`, `identity`, `*` and
    `deflate` (Java's DeflateRequestInterceptor and Go's DEFLATE would inflate zlib, but pydatahub
    passes deflate through: rest.py:259) get the plain body, without the headers."""
    topic, cursor = _put_blobs(dh, project)
    shape = _get_requests(cursor)[protocol]
    plain = _get(raw, project, topic, shape, None)
    assert "Content-Encoding" not in plain.headers, plain.headers
    assert "x-datahub-content-raw-size" not in plain.headers, plain.headers
    assert len(plain.body) > 1000
    for accept, want in [("lz4", "lz4"), ("zlib", "zlib"), ("zstd", "zstd"), ("gzip, zstd;q=0.5", "zstd"),
                         ("LZ4", "lz4"), ("lz4;q=0, zlib", "zlib")]:
        resp = _get(raw, project, topic, shape, accept)
        assert resp.headers.get("Content-Encoding") == want, (accept, resp.headers)
        assert int(resp.headers["x-datahub-content-raw-size"]) == len(plain.body), (accept, resp.headers)
        assert int(resp.headers["Content-Length"]) < len(plain.body), (accept, resp.headers)
        assert resp.body == plain.body, accept
    for accept in ["", "gzip", "br", "gzip, deflate, br", "identity", "*", "deflate", "lz4;q=0"]:
        resp = _get(raw, project, topic, shape, accept)
        assert "Content-Encoding" not in resp.headers, (accept, resp.headers)
        assert "x-datahub-content-raw-size" not in resp.headers, (accept, resp.headers)
        assert resp.body == plain.body, accept


def test_small_answers_and_errors_stay_plain(raw, dh, project):
    """An answer under 256 bytes (an empty read) and an error answer are sent uncompressed even
    when lz4 is accepted (pydatahub decodes either form, rest.py:259)."""
    topic = create_blob_topic(dh, project)
    cursor = cursor_of(dh, project, topic, "0", CursorType.OLDEST)
    resp = _get(raw, project, topic, _get_requests(cursor)["json"], "lz4")
    assert resp.json()["RecordCount"] == 0
    assert "Content-Encoding" not in resp.headers, resp.headers
    bad = raw.post(_shard_path(project, topic), body={"Action": "sub", "Cursor": "nonsense", "Limit": 1},
                   headers={"Accept-Encoding": "lz4"})
    assert bad.status >= 400 and bad.error_code, bad
    assert "Content-Encoding" not in bad.headers, bad.headers
