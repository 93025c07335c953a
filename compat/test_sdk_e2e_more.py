"""Behaviour pinned by the Java SDK's end-to-end tests read in this session (issue 8 item 10,
"look for more of the same kind"; docs/sdk-wire.md "Java e2e tests read this session"). Paths are
under aliyun-datahub-sdk-java 2.13.0 datahub-sdk-public/src/test/java/com/aliyun/datahub/.
Requests are raw signed HTTP in the shapes the Java SDK sends."""

import base64

from cprotobuf.internal import encode_data
from datahub.proto.datahub_record_proto_pb import PutRecordsRequest
from datahub.utils import pb_message_wrap

from util import create_blob_topic, read_all


def _shards(project, topic):
    return "/projects/%s/topics/%s/shards" % (project, topic)


def test_empty_blob_records_are_stored_and_read_back(raw, dh, project, client_factory):
    """oldsdk/BlobTopicTest.java:108-124 testPutEmptyBlobRecords: ten BLOB records with data ""
    over three shards put with FailedRecordCount 0, and the first read back is "" again. Sent as
    JSON (base64 "") and as protobuf (one FieldData holding zero bytes, client/impl
    DatahubClientPbImpl); read back by raw JSON, and by pydatahub over JSON (which reads ""
    where it cannot over PB or batch, protocol doc §5.5)."""
    topic = create_blob_topic(dh, project, shards=3)
    records = [{"ShardId": str(n % 3), "Data": base64.b64encode(b"").decode()} for n in range(10)]
    resp = raw.post(_shards(project, topic), body={"Action": "pub", "Records": records})
    assert resp.status == 200, resp
    assert resp.json()["FailedRecordCount"] == 0, resp
    pb = pb_message_wrap(bytes(encode_data(PutRecordsRequest, {"records": [
        {"shard_id": "0", "data": {"data": [{"value": b""}]}}]})))
    resp = raw.post(_shards(project, topic), body=bytes(pb), content_type="application/x-protobuf",
                    headers={"x-datahub-request-action": "pub"})
    assert resp.status == 200, resp
    cursor = raw.post(_shards(project, topic) + "/0", body={"Action": "cursor", "Type": "OLDEST"}).json()["Cursor"]
    got = raw.post(_shards(project, topic) + "/0", body={"Action": "sub", "Cursor": cursor, "Limit": 10}).json()
    assert [r["Data"] for r in got["Records"]] == ["", "", "", "", ""], got
    assert len(read_all(client_factory("json"), project, topic, "0")) == 5
