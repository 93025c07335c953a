"""LZ4 bodies the Go SDK sends unchanged (docs/sdk-wire.md, "LZ4 bodies the Go SDK sends
unchanged"). aliyun-datahub-sdk-go's lz4Compressor.Compress (datahub/compress.go:80-97 at tag
v0.2.1, :93-110 at HEAD) returns its input itself when the input is empty or when
lz4.CompressBlock returns 0, and the callers still label the result LZ4:

- HTTP bodies: restclient.go:278-301 (v0.2.1; HEAD :273-296) compressIfNeed only gives up when
  the result is *larger* than the body, so an unchanged body goes out with
  `Content-Encoding: lz4` and `x-datahub-content-raw-size` equal to its own length;
- batch payloads: batchrecord.go:130 (v0.2.1) sets compression code 2 (LZ4) and :143-156
  compressIfNeed stores whatever the compressor returned, with rawSize = the payload's length
  (HEAD: batch_serializer.go:125-148, :208-221).

Sluice takes such a body as stored when it is not a valid LZ4 block of the declared size and is
exactly that size, and stores such a batch so that every SDK's batch reader can read it back.
With the pierrec/lz4 v2.6.1 the SDK pins, CompressBlock given the full-bound buffer the SDK
passes never returns 0 (block.go:52-53, :199-202, :220-223), so from the released SDK only the
empty form reaches the wire (every GET and DELETE); the non-empty forms are what the SDK's code
sends with an LZ4 library that does report incompressible input. Sent as raw signed HTTP (the Go
SDK cannot be built here)."""

import base64
import json
import struct

from test_sdk_codec import crc32c, go_put_batch, go_record
from util import create_blob_topic, read_all


def _shards_path(project, topic):
    return "/projects/%s/topics/%s/shards" % (project, topic)


def _go_lz4_unchanged_headers(body):
    # restclient.go:294-296 (v0.2.1): Content-Encoding and the raw size, body left as it was.
    return {"Content-Encoding": "lz4", "Accept-Encoding": "lz4", "x-datahub-content-raw-size": str(len(body))}


def test_go_lz4_json_put_sent_unchanged(raw, dh, project, client_factory):
    """Go v0.2.1 JSON PutRecords (requestmodel.go PutRecordsRequest) with CompressorType LZ4 whose
    body came back from compress.go:92-94 unchanged: accepted, and the records read back."""
    topic = create_blob_topic(dh, project)
    blobs = [b"go lz4 unchanged %d" % i for i in range(3)]
    body = json.dumps({"Action": "pub", "Records": [
        {"ShardId": "0", "Data": base64.b64encode(b).decode(), "Attributes": {"i": str(i)}}
        for i, b in enumerate(blobs)]}).encode()
    resp = raw.post(_shards_path(project, topic), body=body, headers=_go_lz4_unchanged_headers(body))
    assert resp.status == 200, resp
    assert resp.json().get("FailedRecordCount", 0) == 0, resp
    got = read_all(client_factory("json"), project, topic, "0")
    assert [r.blob_data for r in got] == blobs
    assert [r.attributes for r in got] == [{"i": str(i)} for i in range(3)]


def test_lz4_body_neither_a_block_nor_the_raw_size_is_refused(raw, dh, project):
    """The exception is exact: a body that is not an LZ4 block and whose length is not the
    declared raw size is still refused as corrupt (InvalidParameter naming lz4)."""
    topic = create_blob_topic(dh, project)
    body = json.dumps({"Action": "pub", "Records": [{"ShardId": "0", "Data": "aGVsbG8="}]}).encode()
    headers = dict(_go_lz4_unchanged_headers(body), **{"x-datahub-content-raw-size": str(len(body) + 1)})
    resp = raw.post(_shards_path(project, topic), body=body, headers=headers)
    assert resp.status == 400 and resp.error_code == "InvalidParameter", resp
    assert "lz4" in resp.json()["ErrorMessage"], resp


def test_go_lz4_batch_payload_stored_unchanged(raw, dh, project, client_factory):
    """Go v0.2.1 batch put (batchrecord.go:104-141) with CompressorType LZ4 whose payload came
    back unchanged: code 2, rawSize = length of the stored payload = the records themselves.
    Accepted, and read back by pydatahub over batch (which decodes code 2 as an LZ4 block, so
    Sluice must not serve it as sent), JSON and protobuf."""
    topic = create_blob_topic(dh, project)
    blobs = [b"hello", bytes(range(256)), b"go lz4 stored"]
    records = [go_record(-1, [("bytes", b)]) for b in blobs]
    payload = b"".join(records)
    header = b"DHUB" + struct.pack("<iiiIhi", 0, 26 + len(payload), len(payload), crc32c(payload), 2, len(records))
    resp = go_put_batch(raw, project, topic, header + payload)
    assert resp.status == 200, resp
    for protocol in ("batch", "json", "pb"):
        got = read_all(client_factory(protocol), project, topic, "0")
        assert [r.blob_data for r in got] == blobs, protocol


def test_go_lz4_empty_body_on_get_and_delete(raw, dh, project):
    """Go v0.2.1 Get/Delete (restclient.go:131-148) encode EmptyRequest to nil
    (requestmodel.go:23-25); compress.go:81-83 returns it as is, and compressIfNeed labels it:
    `Content-Encoding: lz4`, raw size 0, empty body. Both calls succeed. (Sluice's GET and DELETE
    handlers never read a body, so this also passes without the stored-LZ4 rule: a guard.)"""
    topic = create_blob_topic(dh, project)
    headers = _go_lz4_unchanged_headers(b"")
    path = "/projects/%s/topics/%s" % (project, topic)
    resp = raw.request("GET", path, headers=headers)
    assert resp.status == 200, resp
    assert resp.json()["RecordType"] == "BLOB", resp
    resp = raw.request("DELETE", path, headers=headers)
    assert resp.status == 200, resp
    assert raw.request("GET", path).status == 404
