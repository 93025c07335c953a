"""Topics: create (TUPLE with every field type, BLOB), get / list / update / delete, append_field,
extend mode, and the schema registry (protocol doc §4.2, §4.3, §5.7)."""

import json
import time

import pytest
from datahub.exceptions import (DatahubException, InvalidOperationException, InvalidParameterException,
                                ResourceExistException, ResourceNotFoundException)
from datahub.models import BlobRecord, CursorType, FieldType, RecordSchema, RecordType, TupleRecord

from util import (ALL_TYPES, all_types_schema, create_blob_topic, create_tuple_topic, put, read_all,
                  unique_name, values)


def mixed_schema():
    """Every field type, alternately nullable and NOT NULL, each with its own comment."""
    names = [n for n, _ in ALL_TYPES]
    types = [t for _, t in ALL_TYPES]
    comments = ["", "the string ✓", "double", "", "µs", "money", "int", "small", "tiny", "flt"]
    allow_nulls = [i % 2 == 0 for i in range(len(names))]
    return RecordSchema.from_lists(names, types, comments, allow_nulls)


def field_tuples(schema):
    return [(f.name, f.type, f.comment, f.allow_null) for f in schema.field_list]


def test_create_and_get_tuple_topic(dh, project):
    schema = mixed_schema()
    name = unique_name("t")
    before = int(time.time())
    dh.create_tuple_topic(project, name, 3, 5, schema, "tuple topic ✓")
    got = dh.get_topic(project, name)
    assert got.record_type == RecordType.TUPLE
    assert got.shard_count == 3
    assert got.life_cycle == 5
    assert got.comment == "tuple topic ✓"
    assert field_tuples(got.record_schema) == field_tuples(schema)
    assert before - 5 <= got.create_time <= int(time.time()) + 5, got.create_time  # seconds
    assert got.last_modify_time >= got.create_time


def test_create_and_get_blob_topic(dh, project):
    name = unique_name("b")
    dh.create_blob_topic(project, name, 2, 1, "blob topic")
    got = dh.get_topic(project, name)
    assert got.record_type == RecordType.BLOB
    assert got.record_schema is None
    assert got.shard_count == 2
    assert got.life_cycle == 1
    assert got.comment == "blob topic"


def test_list_update_delete_topic(dh, project):
    t1 = create_tuple_topic(dh, project)
    t2 = create_blob_topic(dh, project)
    listed = dh.list_topic(project).topic_names
    assert sorted(listed) == sorted([t1, t2])

    created = dh.get_topic(project, t1)
    dh.update_topic(project, t1, 3, "updated comment")
    got = dh.get_topic(project, t1)
    assert got.life_cycle == 3
    assert got.comment == "updated comment"
    assert got.last_modify_time >= created.last_modify_time
    assert field_tuples(got.record_schema) == field_tuples(created.record_schema)

    dh.delete_topic(project, t1)
    with pytest.raises(ResourceNotFoundException) as e:
        dh.get_topic(project, t1)
    assert e.value.error_code == "NoSuchTopic"
    assert dh.list_topic(project).topic_names == [t2]
    with pytest.raises(ResourceNotFoundException):
        dh.delete_topic(project, t1)


def test_create_duplicate_topic(dh, project):
    name = create_blob_topic(dh, project)
    with pytest.raises(ResourceExistException) as e:
        dh.create_blob_topic(project, name, 1, 1, "again")
    assert e.value.error_code == "TopicAlreadyExist"
    with pytest.raises(ResourceExistException):
        dh.create_tuple_topic(project, name, 1, 1, all_types_schema(), "again")


def test_same_topic_name_in_two_projects(dh, project):
    other = unique_name("p")
    dh.create_project(other, "")
    name = unique_name("t")
    dh.create_blob_topic(project, name, 1, 1, "in first")
    dh.create_tuple_topic(other, name, 2, 2, all_types_schema(), "in second")
    put(dh, "json", project, name, [BlobRecord(blob_data=b"first")])
    assert dh.get_topic(project, name).record_type == RecordType.BLOB
    assert dh.get_topic(other, name).record_type == RecordType.TUPLE
    assert dh.get_topic(other, name).shard_count == 2
    assert read_all(dh, other, name, "0", all_types_schema()) == []
    dh.delete_topic(other, name)
    assert [r.blob_data for r in read_all(dh, project, name, "0")] == [b"first"]


@pytest.mark.parametrize("body", [{"Lifecycle": 0, "Comment": "c"}, {"Lifecycle": -1, "Comment": "c"},
                                  {"Lifecycle": "seven", "Comment": "c"}])
def test_invalid_topic_update_rejected_by_server(dh, project, body):
    name = create_blob_topic(dh, project, lifecycle=7)
    rest = dh._datahub_impl._rest_client
    with pytest.raises(InvalidParameterException) as e:
        rest.put("/projects/%s/topics/%s" % (project, name), data=json.dumps(body))
    assert e.value.status_code == 400
    assert dh.get_topic(project, name).life_cycle == 7


def test_topic_in_missing_project(dh):
    with pytest.raises(ResourceNotFoundException) as e:
        dh.create_blob_topic(unique_name("nope"), unique_name("t"), 1, 1, "")
    assert e.value.error_code == "NoSuchProject"


def test_delete_topic_removes_its_data(dh, project):
    name = create_blob_topic(dh, project)
    put(dh, "json", project, name, [BlobRecord(blob_data=b"old")])
    dh.delete_topic(project, name)
    dh.create_blob_topic(project, name, 1, 1, "recreated")
    assert read_all(dh, project, name, "0") == []


def _create_topic_raw(dh, project, topic, body):
    rest = dh._datahub_impl._rest_client
    return rest.post("/projects/%s/topics/%s" % (project, topic), data=json.dumps(body))


def _tuple_body(fields, shards=1, lifecycle=1):
    return {"ShardCount": shards, "Lifecycle": lifecycle, "RecordType": "TUPLE", "Comment": "",
            "RecordSchema": json.dumps({"fields": fields})}


@pytest.mark.parametrize("topic,body", [
    ("1abc", {"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    ("ab-c", {"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    ("a" * 129, {"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    ("ok_name", {"ShardCount": 1, "Lifecycle": 0, "RecordType": "BLOB", "Comment": ""}),
    ("ok_name", {"ShardCount": 0, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    ("ok_name", {"ShardCount": 1, "Lifecycle": 1, "RecordType": "NOPE", "Comment": ""}),
    ("ok_name", _tuple_body([{"name": "a", "type": "varchar", "comment": ""}])),
    ("ok_name", _tuple_body([{"name": "a", "type": "bigint"}, {"name": "a", "type": "string"}])),
    ("ok_name", _tuple_body([{"name": "1a", "type": "bigint"}])),
    ("ok_name", {"ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE", "Comment": "", "RecordSchema": "{not json"}),
], ids=["digit-first", "dash", "too-long", "lifecycle-0", "shards-0", "bad-record-type", "bad-field-type",
        "duplicate-field", "bad-field-name", "schema-not-json"])
def test_invalid_topic_create_rejected_by_server(dh, project, topic, body):
    with pytest.raises(InvalidParameterException) as e:
        _create_topic_raw(dh, project, topic, body)
    assert e.value.status_code == 400
    assert e.value.error_code in ("InvalidParameter", "InvalidSchema", "InvalidUriSpec")
    assert "ok_name" not in dh.list_topic(project).topic_names


def test_create_topic_with_extend_mode(dh, project, raw):
    ext = create_blob_topic(dh, project, shards=2, extend_mode=True)
    split = create_tuple_topic(dh, project, shards=2, extend_mode=False)
    assert dh.get_topic(project, ext).shard_count == 2
    assert dh.get_topic(project, split).record_type == RecordType.TUPLE
    # pydatahub does not parse ExpandMode, other SDKs do (protocol doc §4.2).
    assert raw.get("/projects/%s/topics/%s" % (project, ext)).json().get("ExpandMode") == "extend"
    assert raw.get("/projects/%s/topics/%s" % (project, split)).json().get("ExpandMode") == "split"


# --------------------------------------------------------------------------------------------
# append_field

@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_append_field_then_write_and_read(dh, project, client_factory, protocol):
    base = RecordSchema.from_lists(["a", "b"], [FieldType.BIGINT, FieldType.STRING])
    topic = create_tuple_topic(dh, project, schema=base)
    client = client_factory(protocol)
    put(client, protocol, project, topic, [TupleRecord(schema=base, values=[1, "before"])])

    dh.append_field(project, topic, "c", FieldType.DOUBLE)
    got = dh.get_topic(project, topic).record_schema
    assert [(f.name, f.type, f.allow_null) for f in got.field_list] == [
        ("a", FieldType.BIGINT, True), ("b", FieldType.STRING, True), ("c", FieldType.DOUBLE, True)]

    put(client, protocol, project, topic, [TupleRecord(schema=got, values=[2, "after", 2.5])])
    # read the new record with the new schema (SEQUENCE cursor of the last record)
    latest = dh.get_cursor(project, topic, "0", CursorType.LATEST)
    result = client.get_tuple_records(project, topic, "0", got, latest.cursor, 1)
    assert [values(r) for r in result.records] == [[2, "after", 2.5]]


def test_append_existing_field_is_rejected(dh, project):
    base = RecordSchema.from_lists(["a", "b"], [FieldType.BIGINT, FieldType.STRING])
    topic = create_tuple_topic(dh, project, schema=base)
    with pytest.raises(InvalidParameterException):
        dh.append_field(project, topic, "a", FieldType.STRING)
    assert len(dh.get_topic(project, topic).record_schema.field_list) == 2


def test_append_field_to_blob_topic_is_rejected(dh, project):
    topic = create_blob_topic(dh, project)
    with pytest.raises((InvalidParameterException, InvalidOperationException)):
        dh.append_field(project, topic, "a", FieldType.STRING)


# --------------------------------------------------------------------------------------------
# schema registry

def _canonical(schema_json_str):
    return RecordSchema.from_json_str(schema_json_str).to_json_string()


def test_schema_registry(dh, project):
    schema = mixed_schema()
    topic = create_tuple_topic(dh, project, schema=schema)

    listed = dh.list_topic_schema(project, topic)
    assert listed.total_count >= 1
    versions = {item["VersionId"]: item for item in listed.record_schema_list}
    assert 0 in versions, listed.record_schema_list
    # the initial schema is version 0, identical (names, types, comments, notnull) to the topic's
    assert _canonical(versions[0]["RecordSchema"]) == schema.to_json_string()

    by_version = dh.get_topic_schema(project, topic, version_id=0)
    assert by_version.version_id == 0
    assert _canonical(by_version.record_schema) == schema.to_json_string()
    by_schema = dh.get_topic_schema(project, topic, schema=schema)
    assert by_schema.version_id == 0

    other = RecordSchema.from_lists(["x", "y"], [FieldType.STRING, FieldType.BIGINT], ["cx", ""], [True, False])
    registered = dh.register_topic_schema(project, topic, other)
    new_version = registered.version_id
    assert isinstance(new_version, int) and new_version != 0

    listed2 = dh.list_topic_schema(project, topic)
    versions2 = {item["VersionId"]: _canonical(item["RecordSchema"]) for item in listed2.record_schema_list}
    assert versions2.get(new_version) == other.to_json_string()
    assert versions2.get(0) == schema.to_json_string()
    assert listed2.total_count == listed.total_count + 1
    assert dh.get_topic_schema(project, topic, schema=other).version_id == new_version
    assert _canonical(dh.get_topic_schema(project, topic, version_id=new_version).record_schema) == \
        other.to_json_string()
    # registering a version does not change the topic's own schema
    assert field_tuples(dh.get_topic(project, topic).record_schema) == field_tuples(schema)

    dh.delete_topic_schema(project, topic, new_version)
    listed3 = dh.list_topic_schema(project, topic)
    assert new_version not in {item["VersionId"] for item in listed3.record_schema_list}
    with pytest.raises(DatahubException) as e:
        dh.get_topic_schema(project, topic, version_id=new_version)
    assert 400 <= e.value.status_code < 500


def test_schema_registry_paging(dh, project):
    topic = create_tuple_topic(dh, project)
    for i in range(3):
        dh.register_topic_schema(project, topic,
                                 RecordSchema.from_lists(["v%d" % i], [FieldType.BIGINT]))
    # 4 versions, pages of 3 (the batch client pages with size 100 while page_number < PageCount)
    page1 = dh.list_topic_schema(project, topic, 1, 3)
    page2 = dh.list_topic_schema(project, topic, 2, 3)
    assert page1.total_count == 4 and page2.total_count == 4
    assert page1.page_count == 2
    assert len(page1.record_schema_list) == 3
    assert len(page2.record_schema_list) == 1
    ids = [i["VersionId"] for i in page1.record_schema_list + page2.record_schema_list]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4


def test_schema_registry_on_missing_topic(dh, project):
    with pytest.raises(ResourceNotFoundException):
        dh.list_topic_schema(project, unique_name("nope"))
