"""Issue 8 items 4, 5, 6 and 10: what the official Go and Java SDKs send and expect, as raw signed
HTTP in the exact shapes they use (neither SDK can be built here), plus the behaviour the Java SDK's
end-to-end tests pin down (they ran against the real service). Each test cites its SDK source;
docs/sdk-wire.md lists the differences.

Go SDK: github.com/aliyun/aliyun-datahub-sdk-go (HEAD and tag v0.2.1).
Java SDK: github.com/aliyun/aliyun-datahub-sdk-java 2.13.0, datahub-sdk-public/src/... (abbreviated
`java/...` below for src/main/java/com/aliyun/datahub/ and `e2e/...` for
src/test/java/com/aliyun/datahub/client/e2e/).
"""

import base64
import time

import pytest
from datahub.exceptions import (InvalidOperationException, InvalidParameterException, ResourceNotFoundException,
                                SeekOutOfRangeException, ShardSealedException)
from datahub.models import (ConnectorOffset, ConnectorState, ConnectorType, CursorType, FieldType,
                            OdpsConnectorConfig, OffsetBase, OffsetWithSession, PartitionMode, RecordSchema,
                            SubscriptionState)

import sign
from util import ACCESS_ID, ACCESS_KEY, blob_records, create_blob_topic, create_tuple_topic, now_ms, unique_name

SCHEMA = RecordSchema.from_lists(["f1", "f2"], [FieldType.BIGINT, FieldType.STRING])


def signed_as(raw, method, path_and_query, resource, body=b"", content_type="application/json"):
    """Sends `path_and_query`, signed over `resource` verbatim (the SDK's own canonical resource)."""
    date = sign.rfc822()
    headers = {"Content-Type": content_type, "Date": date, "x-datahub-client-version": sign.CLIENT_VERSION}
    lines = [method, content_type, date, "x-datahub-client-version:" + sign.CLIENT_VERSION, resource]
    auth = "DATAHUB %s:%s" % (ACCESS_ID, sign.signature(ACCESS_KEY, "\n".join(lines)))
    return raw.request(method, path_and_query, body=body, date=date, content_type=content_type,
                       authorization_value=auth, headers={k: v for k, v in headers.items()
                                                          if k.startswith("x-")})


def odps_connector(dh, project, topic):
    config = OdpsConnectorConfig("odps_project", "odps_table", "http://odps.example/api", "http://dt.odps.example",
                                 "odpsId", "odpsKey", PartitionMode.SYSTEM_TIME, 15)
    return dh.create_connector(project, topic, ConnectorType.SINK_ODPS, ["f1", "f2"], config).connector_id


@pytest.fixture
def connector(dh, project):
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=3)
    return topic, odps_connector(dh, project, topic)


# --------------------------------------------------------------------------------------------
# item 4: the canonical query each SDK signs

def test_go_sdk_done_time_signed_with_equals(raw, project, connector):
    """Go SDK GetConnectorDoneTime: implement.go:797 (v0.2.1 implement.go:882) sets the query
    {"donetime": ""}; restclient.go:186-189 renders it with url.Values.Encode() as `donetime=` and
    restclient.go:195 signs req.URL.RequestURI(), the path and query exactly as sent."""
    topic, cid = connector
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    resp = signed_as(raw, "GET", path + "?donetime=", path + "?donetime=")
    assert resp.status == 200, resp
    assert resp.json()["DoneTime"] > 0


def test_java_sdk_done_time_signed_bare(raw, project, connector):
    """Java SDK getConnectorDoneTime: java/client/impl/DataHubService.java:114 requests
    `...connectors/{connectorId}?donetime`; java/client/auth/AliyunAuthSigner.java:22-24 signs
    OkHttp's encodedPath() and encodedQuery() as sent (Authorization.java:17-26)."""
    topic, cid = connector
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    resp = signed_as(raw, "GET", path + "?donetime", path + "?donetime")
    assert resp.status == 200, resp
    assert "DoneTime" in resp.json()


def test_pydatahub_form_still_accepted_for_go_query(raw, project, connector):
    """pydatahub (auth/aliyun_account.py:100-104, 151-152) unquotes the URL and renders blank values
    as bare keys: a `?donetime=` request signed pydatahub's way is accepted too."""
    topic, cid = connector
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    resp = signed_as(raw, "GET", path + "?donetime=", path + "?donetime")
    assert resp.status == 200, resp


@pytest.mark.parametrize("query", ["filter=", "mode=id&filter=", "filter=&mode=id"])
def test_several_params_as_sent(raw, project, query):
    """Go ListProjectWithFilter (implement.go:29-33) sends `?filter=<f>` (empty filter: `filter=`),
    Go ListConnector sends `?mode=id` (implement.go:664); Go signs the query as url.Values.Encode()
    renders it (sorted), Java as OkHttp sends it (any order). Each is accepted as signed."""
    resp = signed_as(raw, "GET", "/projects?" + query, "/projects?" + query)
    assert resp.status == 200, resp
    assert project in resp.json()["ProjectNames"]


def test_query_signed_differently_than_sent_is_refused(raw, project, connector):
    """The extra canonical forms do not loosen the check: a signature over another query is 401."""
    topic, cid = connector
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    resp = signed_as(raw, "GET", path + "?donetime=", path + "?donetime=1")
    assert resp.status == 401, resp
    assert resp.error_code == "Unauthorized"
    resp = signed_as(raw, "GET", "/projects?filter=a", "/projects?filter=b")
    assert resp.status == 401, resp


# --------------------------------------------------------------------------------------------
# item 5: one shard's connector status

def test_one_shard_status_has_entry_fields_at_top_level(raw, dh, project, connector):
    """Go GetConnectorShardStatusByShard posts {"Action":"Status","ShardId":"0"} (implement.go:838-841)
    and unmarshals the body straight into ConnectorShardStatusEntry (resultmodel.go:873-877); Java's
    getConnectorShardStatus(..., shardId) returns the body as ConnectorShardStatusEntry
    (java/client/impl/DataHubService.java:134-136). pydatahub reads ShardStatusInfos, or a top-level
    entry with ShardId (models/results.py:1191-1200)."""
    topic, cid = connector
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    resp = raw.post(path, {"Action": "Status", "ShardId": "1"})
    assert resp.status == 200, resp
    body = resp.json()
    for key in ("State", "CurrentSequence", "CurrentTimestamp", "UpdateTime", "DiscardCount", "DoneTime",
                "LastErrorMessage", "WorkerAddress"):
        assert key in body, (key, body)
    assert body["ShardId"] == "1"
    assert body["State"] == body["ShardStatusInfos"]["1"]["State"]
    infos = dh.get_connector_shard_status(project, topic, cid, "1").shard_status_infos
    assert list(infos) == ["1"]
    # Without ShardId: the map only, as all three SDKs read it (resultmodel.go:853-856).
    whole = raw.post(path, {"Action": "Status"}).json()
    assert sorted(whole["ShardStatusInfos"]) == ["0", "1", "2"]
    assert "CurrentSequence" not in whole


# --------------------------------------------------------------------------------------------
# item 6: error codes every SDK maps

def test_delete_project_with_topics_is_operation_denied(raw, dh, project):
    """Go error.go:37 knows `OperationDenied` (→ InvalidOperationError, error.go:84) and not
    InvalidOperation; Java maps OperationDenied in AbstractDatahubClient.java:125-127; pydatahub
    maps it to InvalidOperationException (exceptions.py:187)."""
    create_blob_topic(dh, project)
    resp = raw.delete("/projects/%s" % project)
    assert resp.status == 400, resp
    assert resp.error_code == "OperationDenied"
    with pytest.raises(InvalidOperationException):
        dh.delete_project(project)
    # e2e/ProjectTest.java:92-102 pins the same code: NoPermissionException with OPERATOR_DENIED.


def test_bad_schema_is_invalid_parameter(raw, project):
    """InvalidSchema is in neither the Go (error.go:66-100, which would retry it) nor the Java
    (AbstractDatahubClient.java:103-145) table; InvalidParameter is in all three."""
    resp = raw.post("/projects/%s/topics/%s" % (project, unique_name("t")),
                    {"Action": "create", "ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE",
                     "RecordSchema": "{\"fields\":[{\"name\":\"f\",\"type\":\"NOSUCHTYPE\"}]}", "Comment": "c"})
    assert resp.status == 400, resp
    assert resp.error_code == "InvalidParameter"


# --------------------------------------------------------------------------------------------
# item 10: behaviour pinned by the Java SDK's end-to-end tests

def test_cursors_as_get_cursor_test_pins(raw, dh, project):
    """e2e/GetCursorTest.java:28-60: OLDEST of an empty shard is sequence 0; SYSTEM_TIME 10 s in the
    future (after the last record) is SeekOutOfRange (:55-58); SEQUENCE past the end is
    SeekOutOfRange (:65-68); SEQUENCE -1 is InvalidParameter (:75-78); shard "4" is not found
    (:84-87). oldsdk/GetCursorTest.java:127-146, 182-187, 216-220: a past SYSTEM_TIME after the last
    record (or on an empty shard) gives the next sequence to be written; a future one is refused."""
    topic = create_blob_topic(dh, project)
    assert dh.get_cursor(project, topic, "0", CursorType.OLDEST).sequence == 0
    week_ago = now_ms() - 7 * 24 * 3600 * 1000
    empty = dh.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, week_ago)
    assert empty.sequence == 0
    with pytest.raises(SeekOutOfRangeException):
        dh.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, now_ms() + 10000)
    recs = blob_records([b"test-data"] * 10)
    for r in recs:
        r.shard_id = "0"
    assert dh.put_records(project, topic, recs).failed_record_count == 0
    last = dh.get_cursor(project, topic, "0", CursorType.LATEST)
    assert last.sequence == 9
    # One put: all ten records share its system time, so the first at or after it is record 0.
    assert dh.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, last.record_time).sequence == 0
    with pytest.raises(SeekOutOfRangeException) as e:
        dh.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, now_ms() + 10000)
    assert e.value.error_code == "SeekOutOfRange"
    # Just after the last record, and already past: the next record to be written.
    after = last.record_time + 1
    deadline = time.monotonic() + 5
    while now_ms() <= after and time.monotonic() < deadline:  # precondition: `after` is past
        time.sleep(0.002)
    assert dh.get_cursor(project, topic, "0", CursorType.SYSTEM_TIME, after).sequence == 10
    path = "/projects/%s/topics/%s/shards/0" % (project, topic)
    resp = raw.post(path, {"Action": "cursor", "Type": "SEQUENCE", "Sequence": -1})
    assert resp.status == 400 and resp.error_code == "InvalidParameter", resp
    resp = raw.post(path, {"Action": "cursor", "Type": "SEQUENCE", "Sequence": 11})
    assert resp.error_code == "SeekOutOfRange", resp
    resp = raw.post("/projects/%s/topics/%s/shards/4" % (project, topic), {"Action": "cursor", "Type": "OLDEST"})
    assert resp.status == 404 and resp.error_code == "NoSuchShard", resp


def test_put_records_bad_shard_ids(raw, dh, project):
    """e2e/PutGetRecordsTest.java:188-215: put_records to shard "4" of a 3-shard topic fails each
    record with NoSuchShard, to shard "AAA" with InvalidShardId (the JSON shape of
    java/client/impl/DataHubService.java:63 putRecords)."""
    topic = create_blob_topic(dh, project, shards=3)
    data = base64.b64encode(b"test-data").decode("ascii")
    for shard, code in (("4", "NoSuchShard"), ("AAA", "InvalidShardId")):
        records = [{"ShardId": shard, "Data": data, "Attributes": {"partition": "ds=2016"}}] * 10
        resp = raw.post("/projects/%s/topics/%s/shards" % (project, topic), {"Action": "pub", "Records": records})
        assert resp.status == 200, resp
        body = resp.json()
        assert body["FailedRecordCount"] == 10, body
        assert {f["ErrorCode"] for f in body["FailedRecords"]} == {code}, body
    recs = blob_records([b"x"])
    recs[0].shard_id = "AAA"
    failed = dh.put_records(project, topic, recs).failed_records
    assert [f.error_code for f in failed] == ["InvalidShardId"]


def test_connector_offset_time_is_echoed(dh, raw, project, connector):
    """e2e/SinkDatahubTest.java:224-242: a stopped connector's shards are ConnectorShardState.STOPPED,
    which the Java SDK spells only `CONTEXT_PAUSED` (java/client/model/ConnectorShardState.java; Go
    connector.go:1013 `Stopped`); after updateConnectorOffset(sequence 10, timestamp 1000) on every
    shard (ShardId null), each shard reports CurrentSequence 10 and CurrentTimestamp 1000. The
    request is {"Action":"updateshardcontext","CurrentTime":1000,"CurrentSequence":10}
    (java/client/impl/request/UpdateConnectorOffsetRequest.java:6-16)."""
    topic, cid = connector
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    path = "/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)
    infos = raw.post(path, {"Action": "Status"}).json()["ShardStatusInfos"]
    assert {e["State"] for e in infos.values()} == {"CONTEXT_PAUSED"}, infos
    dh.update_connector_offset(project, topic, cid, "", ConnectorOffset(10, 1000))
    infos = dh.get_connector_shard_status(project, topic, cid).shard_status_infos
    assert sorted(infos) == ["0", "1", "2"]
    for entry in infos.values():
        assert entry.current_sequence == 10
        assert entry.current_timestamp == 1000


def test_project_names_ignore_case(dh, raw):
    """e2e/ProjectTest.java:83-89: a project created as TMP_... is found by that name and reports its
    name in lower case."""
    name = unique_name("tmp")
    dh.create_project(name.upper(), "comment")
    # pydatahub reports the name it was asked for (implement.py get_project): read it raw.
    got = raw.get("/projects/%s" % name.upper())
    assert got.status == 200 and got.json()["ProjectName"] == name.lower(), got
    assert name.lower() in dh.list_project().project_names
    dh.delete_project(name)


def test_split_and_merge_as_topic_test_pins(dh, raw, project):
    """e2e/TopicTest.java:55-107: a 2-shard topic splits shard 0 at its middle into "2" (ending at
    3FFFFFFFFFFFFFFFBFFFFFFFFFFFFFFF) and "3"; merging them gives "4" over shard 0's range; shards
    1 and 4 are ACTIVE, the rest CLOSED. e2e/ShardTest.java:96-156: merging sealed shards is
    ShardSealed, non-adjacent or a shard with itself InvalidParameter, a missing shard not found."""
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=2)
    shards = {s.shard_id: s for s in dh.list_shard(project, topic).shards}
    assert shards["0"].begin_hash_key == "00000000000000000000000000000000"
    assert shards["0"].end_hash_key == "7FFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF"
    assert shards["0"].right_shard_id == "1" and shards["1"].left_shard_id == "0"
    new = dh.split_shard(project, topic, "0").new_shards
    assert [s.shard_id for s in new] == ["2", "3"]
    assert new[0].end_hash_key == "3FFFFFFFFFFFFFFFBFFFFFFFFFFFFFFF"
    dh.wait_shards_ready(project, topic, 10)
    # pydatahub's MergeShardResult is broken client-side (test_shards.py): merge raw, as Java does.
    resp = raw.post("/projects/%s/topics/%s/shards" % (project, topic),
                    {"Action": "merge", "ShardId": "2", "AdjacentShardId": "3"})
    assert resp.status == 200, resp
    merged = resp.json()
    assert merged["ShardId"] == "4"
    assert (merged["BeginHashKey"], merged["EndHashKey"]) == ("00000000000000000000000000000000",
                                                              "7FFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF")
    dh.wait_shards_ready(project, topic, 10)
    states = {s.shard_id: s.state.value for s in dh.list_shard(project, topic).shards}
    assert states == {"0": "CLOSED", "1": "ACTIVE", "2": "CLOSED", "3": "CLOSED", "4": "ACTIVE"}
    with pytest.raises(ShardSealedException):
        dh.merge_shard(project, topic, "2", "3")
    other = create_blob_topic(dh, project, shards=3)
    with pytest.raises(InvalidParameterException):
        dh.merge_shard(project, other, "0", "2")
    with pytest.raises(InvalidParameterException):
        dh.merge_shard(project, other, "0", "0")
    with pytest.raises(ResourceNotFoundException):
        dh.merge_shard(project, other, "2", "3")
    with pytest.raises(ResourceNotFoundException):
        dh.split_shard(project, other, "3", "2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(InvalidParameterException):
        dh.split_shard(project, other, "0", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")


def test_subscription_as_subscription_test_pins(dh, raw, project):
    """e2e/SubscriptionTest.java:41-108: a new USER subscription is ONLINE; the first session is "1"
    at version 0; a committed offset (10, 1000) and a reset one (20, 2000, version 1) read back as
    given; after the reset a commit with the new version succeeds."""
    topic = create_blob_topic(dh, project)
    sub_id = dh.create_subscription(project, topic, "test commit").sub_id
    # pydatahub's get_subscription is broken client-side (test_subscriptions.py): read it raw.
    sub = raw.get("/projects/%s/topics/%s/subscriptions/%s" % (project, topic, sub_id)).json()
    assert sub["Comment"] == "test commit" and sub["Type"] == 0 and sub["State"] == SubscriptionState.ACTIVE.value
    session = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert str(session.session_id) == "1" and session.version == 0
    dh.update_subscription_offset(project, topic, sub_id,
                                  {"0": OffsetWithSession(10, 1000, session.version, session.session_id)})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert (got.sequence, got.timestamp) == (10, 1000)
    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetBase(20, 2000)})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert (got.sequence, got.timestamp, got.version) == (20, 2000, 1)
    dh.update_subscription_offset(project, topic, sub_id,
                                  {"0": OffsetWithSession(20, 2000, got.version, session.session_id)})
