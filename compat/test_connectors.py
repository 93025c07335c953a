"""Connectors (protocol doc §4.9): every call of the user's connector tutorial
(seed/connector-tutorial.rst) as written there, for each of the nine connector types, and the
error cases. The DataHub sink's data path is in test_connector_datahub.py.

Three tutorial snippets cannot run literally with pydatahub 2.29.0 and are called the way they obviously mean:
`dh.update_connector(project_name, topic_name, connector_type, connector_id)` is the signature
line (the SDK requires a config as 4th argument), and the offset example calls
`update_connector_state` with the arguments of `update_connector_offset`; and
`from datahub.models import DataHubConnectorConfig` fails because the SDK does not export it
(it lives in `datahub.models.connector`, as does `WriteMode`).
"""

import json
import time
from collections import OrderedDict

import pytest
from datahub.exceptions import (InvalidOperationException, InvalidParameterException,
                                ResourceNotFoundException)
from datahub.models import (AuthMode, ConnectorOffset, ConnectorState, ConnectorType, DatabaseConnectorConfig,
                            EsConnectorConfig, FcConnectorConfig, FieldType, HologresConnectorConfig,
                            OdpsConnectorConfig, OssConnectorConfig, OtsConnectorConfig, PartitionMode, RecordSchema,
                            TupleRecord)
# pydatahub 2.29.0 does not export these two from datahub.models (the tutorial's
# `from datahub.models import DataHubConnectorConfig` raises ImportError): an SDK defect.
from datahub.models.connector import DataHubConnectorConfig, WriteMode

from util import create_tuple_topic, now_ms, unique_name

SCHEMA = RecordSchema.from_lists(["f1", "f2", "f3", "f4"],
                                 [FieldType.BIGINT, FieldType.STRING, FieldType.DOUBLE, FieldType.STRING])
column_fields = ['f1', 'f2', 'f3']


def tuple_rows(n, start=0):
    recs = []
    for i in range(start, start + n):
        r = TupleRecord(schema=SCHEMA, values=[i, "s%d" % i, i / 2, "extra%d" % i])
        r.shard_id = "0"
        recs.append(r)
    return recs


@pytest.fixture
def topic_name(dh, project):
    return create_tuple_topic(dh, project, schema=SCHEMA, shards=2)


def odps_config():
    project_name_, table_name = "odps_project", "odps_table"
    odps_endpoint, tunnel_endpoint = "http://odps.example/api", "http://dt.odps.example"
    connector_access_id, connector_access_key = "odpsId", "odpsKey"
    partition_mode, time_range = PartitionMode.SYSTEM_TIME, 15
    partition_config = OrderedDict([
        ("ds", "%Y%m%d"),
        ("hh", "%H"),
        ("mm", "%M")
    ])
    return OdpsConnectorConfig(
        project_name_, table_name, odps_endpoint,
        tunnel_endpoint, connector_access_id, connector_access_key,
        partition_mode, time_range, partition_config)


def configs(endpoint):
    """One tutorial-shaped config per type."""
    host, port, database, user, password, table, ignore = "127.0.0.1", 3306, "db", "root", "pw", "t1", True
    return {
        ConnectorType.SINK_ODPS: odps_config(),
        ConnectorType.SINK_ADS: DatabaseConnectorConfig(host, port, database, user, password, table, ignore),
        ConnectorType.SINK_MYSQL: DatabaseConnectorConfig(host, port, database, user, password, table, ignore),
        ConnectorType.SINK_ES: EsConnectorConfig("index1", "http://127.0.0.1:9200", "u", "p", ["f1"], ["f2"], True),
        # sts (stored, but its tasks hang: not available self-hosted); ak is test_connector_fc.py's
        ConnectorType.SINK_FC: FcConnectorConfig("http://fc.example", "svc", "fn", AuthMode.STS, "fcId", "fcKey"),
        ConnectorType.SINK_OSS: OssConnectorConfig("http://oss.example", "bucket", "prefix/", "%Y%m%d%H%M", 30,
                                                   AuthMode.AK, "ossId", "ossKey"),
        ConnectorType.SINK_OTS: OtsConnectorConfig("http://ots.example", "inst", "tbl", AuthMode.AK, "otsId",
                                                   "otsKey", WriteMode.PUT),
        ConnectorType.SINK_HOLOGRES: HologresConnectorConfig("127.0.0.1:5432", "proj", "topic", "inst",
                                                             AuthMode.AK, "MILLISECOND", "hId", "hKey"),
        ConnectorType.SINK_DATAHUB: DataHubConnectorConfig(endpoint, "no_such_project", "no_such_topic",
                                                           AuthMode.AK, "dhId", "dhKey"),
    }


def wait_status(dh, project, topic, cid, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = dh.get_connector_shard_status(project, topic, cid)
        if pred(result.shard_status_infos):
            return result.shard_status_infos
        if time.monotonic() > deadline:
            raise AssertionError("status never matched: %r" % {k: v.to_json() for k, v in
                                                             result.shard_status_infos.items()})
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# the tutorial, top to bottom, with the ODPS connector it uses

def test_tutorial_odps_walkthrough(dh, project, topic_name):
    project_name = connector_test_project_name = cproject_name = project
    system_time_topic_name = topic_name
    dh.put_records(project_name, topic_name, tuple_rows(120))

    # 创建connector
    connector_config = odps_config()
    start_time = int(time.time() * 1000) - 60_000
    create_result = dh.create_connector(project_name, topic_name, ConnectorType.SINK_ODPS,
                                        column_fields, connector_config, start_time)
    print(create_result.connector_id)
    connector_id = create_result.connector_id
    assert connector_id

    # 列出connector
    connectors_result = dh.list_connector(project_name, topic_name)
    connector_ids = connectors_result.connector_ids
    print(connector_ids)
    assert connector_ids == [connector_id]

    # 查询connector
    connector_result = dh.get_connector(project_name, topic_name, connector_id)
    print(connector_result)
    assert connector_result.connector_id == connector_id
    assert connector_result.column_fields == column_fields
    assert connector_result.type == ConnectorType.SINK_ODPS
    assert connector_result.state == ConnectorState.CONNECTOR_RUNNING
    assert connector_result.creator and connector_result.owner
    cfg = connector_result.config
    assert isinstance(cfg, OdpsConnectorConfig)
    assert list(cfg.partition_config.items()) == [("ds", "%Y%m%d"), ("hh", "%H"), ("mm", "%M")]
    assert (cfg.project_name, cfg.table_name, cfg.time_range) == ("odps_project", "odps_table", 15)
    assert cfg.partition_mode == PartitionMode.SYSTEM_TIME
    assert len(connector_result.shard_contexts) == 2

    # 更新connector: a new config object
    new_odps_project_name = "1"
    new_system_time_table_name = "2"
    new_odps_endpoint = "3"
    new_tunnel_endpoint = "4"
    new_odps_access_id = "5"
    new_odps_access_key = "6"
    new_partition_config = OrderedDict([("pt", "%Y%m%d"), ("ct", "%H%M")])
    new_connector_config = OdpsConnectorConfig(new_odps_project_name, new_system_time_table_name, new_odps_endpoint,
                                               new_tunnel_endpoint, new_odps_access_id, new_odps_access_key,
                                               PartitionMode.USER_DEFINE, 30, new_partition_config)
    dh.update_connector(cproject_name, topic_name, connector_id, new_connector_config)
    got = dh.get_connector(project_name, topic_name, connector_id).config
    assert list(got.partition_config.items()) == [("pt", "%Y%m%d"), ("ct", "%H%M")]
    assert got.partition_mode == PartitionMode.USER_DEFINE and got.time_range == 30

    # 更新connector: modify the config read back, address it by type
    new_connector_config = dh.get_connector(connector_test_project_name, system_time_topic_name, connector_id).config
    new_connector_config.project_name = "1"
    new_connector_config.table_name = "2"
    new_connector_config.odps_endpoint = "3"
    new_connector_config.tunnel_endpoint = "4"
    new_connector_config.access_id = "5"
    new_connector_config.access_key = "6"
    dh.update_connector(project_name, topic_name, ConnectorType.SINK_ODPS, new_connector_config)
    got = dh.get_connector(project_name, topic_name, ConnectorType.SINK_ODPS).config
    assert (got.project_name, got.table_name, got.odps_endpoint, got.access_id) == ("1", "2", "3", "5")

    # 查询connector shard状态: "3" is no warehouse (file:// or s3://), so the tasks hang and say so
    shard_id = "0"
    status_result = dh.get_connector_shard_status(project_name, topic_name, connector_id, shard_id)
    assert list(status_result.shard_status_infos) == ["0"]
    infos = wait_status(dh, project_name, topic_name, connector_id,
                        lambda s: all(e.state.value == "CONTEXT_HANG" for e in s.values()))
    assert set(infos) == {"0", "1"}
    for e in infos.values():
        assert "OdpsEndpoint" in e.last_error_message
        assert e.update_time > 0 and e.worker_addr and e.done_time > 0 and e.discard_count == 0
    assert infos["0"].current_sequence == -1  # start_time is before every record: none delivered

    # 重启connector shard
    dh.reload_connector(project_name, topic_name, connector_id, shard_id)
    dh.reload_connector(project_name, topic_name, connector_id)

    # 添加新field
    field_name = "f4"
    dh.append_connector_field(project_name, topic_name, connector_id, field_name)
    assert dh.get_connector(project_name, topic_name, connector_id).column_fields == column_fields + ["f4"]

    # 更新connector状态 / 点位
    state = ConnectorState.CONNECTOR_STOPPED
    dh.update_connector_state(project_name, topic_name, connector_id, state)
    assert dh.get_connector(project_name, topic_name, connector_id).state == ConnectorState.CONNECTOR_STOPPED
    connector_offset = ConnectorOffset(100, 1582801630000)
    dh.update_connector_offset(project_name, topic_name, connector_id, shard_id, connector_offset)
    infos = dh.get_connector_shard_status(project_name, topic_name, connector_id).shard_status_infos
    assert infos["0"].current_sequence == 100
    assert infos["0"].state.value == "CONTEXT_PAUSED"
    dh.update_connector_offset(project_name, topic_name, connector_id, '', ConnectorOffset(-1, 1582801630000))
    infos = dh.get_connector_shard_status(project_name, topic_name, connector_id).shard_status_infos
    # every record is after the time: none delivered yet
    assert infos["0"].current_sequence == -1 and infos["1"].current_sequence == -1
    dh.update_connector_state(project_name, topic_name, connector_id, ConnectorState.CONNECTOR_RUNNING)

    # 查询connector完成时间
    result = dh.get_connector_done_time(project_name, topic_name, connector_id)
    print(result.done_time)
    assert isinstance(result.done_time, int) and result.done_time > 0
    assert result.time_zone and result.time_window == 30 * 60

    # 删除connector
    dh.delete_connector(project_name, topic_name, connector_id)
    with pytest.raises(ResourceNotFoundException):
        dh.get_connector(project_name, topic_name, connector_id)
    assert dh.list_connector(project_name, topic_name).connector_ids == []


# --------------------------------------------------------------------------------------------
# every type

@pytest.mark.parametrize("connector_type", list(ConnectorType), ids=lambda t: t.value)
def test_each_type_is_managed(dh, project, topic_name, endpoint, connector_type):
    project_name = project
    connector_config = configs(endpoint)[connector_type]
    create_result = dh.create_connector(project_name, topic_name, connector_type, column_fields, connector_config)
    connector_id = create_result.connector_id
    assert connector_id in dh.list_connector(project_name, topic_name).connector_ids

    got = dh.get_connector(project_name, topic_name, connector_id)
    assert got.type == connector_type
    assert type(got.config) is type(connector_config)
    sent = connector_config.to_json()
    back = got.config.to_json()
    for key in sent:
        if key in ("Port", "Ignore", "ProxyMode"):
            continue  # SDK round-trip quirks (protocol doc §6.7)
        assert back[key] == sent[key], key
    # by type string as well
    assert dh.get_connector(project_name, topic_name, connector_type).connector_id == connector_id

    # every status field carries a value; without a writable sink the tasks hang and say why
    infos = wait_status(dh, project_name, topic_name, connector_id,
                        lambda s: s and all(e.state.value == "CONTEXT_HANG" and e.last_error_message
                                            for e in s.values()))
    for e in infos.values():
        # nothing delivered yet: CurrentSequence is the last record delivered, so -1
        assert e.current_sequence == -1 and e.current_timestamp > 0 and e.done_time > 0
        assert e.update_time > 0 and e.worker_addr

    dh.update_connector(project_name, topic_name, connector_id, connector_config)
    dh.reload_connector(project_name, topic_name, connector_id)
    dh.append_connector_field(project_name, topic_name, connector_id, "f4")
    dh.update_connector_state(project_name, topic_name, connector_id, ConnectorState.CONNECTOR_STOPPED)
    dh.update_connector_offset(project_name, topic_name, connector_id, '', ConnectorOffset(0, -1))
    dh.update_connector_state(project_name, topic_name, connector_id, ConnectorState.CONNECTOR_RUNNING)
    done = dh.get_connector_done_time(project_name, topic_name, connector_id)
    assert done.done_time > 0
    dh.delete_connector(project_name, topic_name, connector_id)
    with pytest.raises(ResourceNotFoundException):
        dh.delete_connector(project_name, topic_name, connector_id)


# --------------------------------------------------------------------------------------------
# errors

def test_offset_update_while_running_is_refused(dh, project, topic_name):
    cid = dh.create_connector(project, topic_name, ConnectorType.SINK_ODPS, column_fields, odps_config()).connector_id
    with pytest.raises(InvalidOperationException):
        dh.update_connector_offset(project, topic_name, cid, "0", ConnectorOffset(0, -1))
    dh.update_connector_state(project, topic_name, cid, ConnectorState.CONNECTOR_STOPPED)
    dh.update_connector_offset(project, topic_name, cid, "0", ConnectorOffset(0, -1))
    with pytest.raises(ResourceNotFoundException):
        dh.update_connector_offset(project, topic_name, cid, "7", ConnectorOffset(0, -1))


def test_append_unknown_field_and_bad_columns(dh, project, topic_name):
    cid = dh.create_connector(project, topic_name, ConnectorType.SINK_ODPS, column_fields, odps_config()).connector_id
    with pytest.raises(InvalidParameterException) as e:
        dh.append_connector_field(project, topic_name, cid, "no_such_field")
    assert "no_such_field" in str(e.value)
    with pytest.raises(InvalidParameterException) as e:
        dh.append_connector_field(project, topic_name, cid, "f1")  # already a column
    with pytest.raises(InvalidParameterException) as e:
        dh.create_connector(project, topic_name, ConnectorType.SINK_ODPS, ["f1", "nope"], odps_config())
    assert "nope" in str(e.value)


def test_delete_twice_and_missing(dh, project, topic_name):
    cid = dh.create_connector(project, topic_name, ConnectorType.SINK_OSS, column_fields,
                              configs("http://x")[ConnectorType.SINK_OSS]).connector_id
    dh.delete_connector(project, topic_name, cid)
    for call in (lambda: dh.delete_connector(project, topic_name, cid),
                 lambda: dh.get_connector(project, topic_name, cid),
                 lambda: dh.get_connector_shard_status(project, topic_name, cid),
                 lambda: dh.get_connector(project, topic_name, ConnectorType.SINK_OSS),
                 lambda: dh.get_connector_done_time(project, topic_name, cid)):
        with pytest.raises(ResourceNotFoundException) as e:
            call()
        assert e.value.error_code == "NoSuchConnector"
    with pytest.raises(ResourceNotFoundException):
        dh.list_connector(project, "missing_topic")


@pytest.mark.parametrize("connector_type,config,field", [
    (ConnectorType.SINK_MYSQL, DatabaseConnectorConfig("h", "notaport", "db", "u", "p", "t", True), "Port"),
    (ConnectorType.SINK_ADS, DatabaseConnectorConfig("", 3306, "db", "u", "p", "t", False), "Host"),
    (ConnectorType.SINK_DATAHUB, DataHubConnectorConfig("ftp://x", "p", "t", AuthMode.AK, "a", "b"), "Endpoint"),
    (ConnectorType.SINK_OSS, OssConnectorConfig("e", "b", "p", "%Y", -5, AuthMode.STS), "TimeRange"),
    (ConnectorType.SINK_ODPS, OdpsConnectorConfig("p", "", "e", "t", "", "", PartitionMode.SYSTEM_TIME, 15), "Table"),
    (ConnectorType.SINK_ES, EsConnectorConfig("", "e", "u", "p", [], [], True), "Index"),
    (ConnectorType.SINK_FC, FcConnectorConfig("e", "", "f", AuthMode.STS), "Service"),
], ids=["mysql-port", "ads-host", "datahub-endpoint", "oss-timerange", "odps-table", "es-index", "fc-service"])
def test_bad_configs_name_the_field(dh, project, topic_name, connector_type, config, field):
    with pytest.raises(InvalidParameterException) as e:
        dh.create_connector(project, topic_name, connector_type, column_fields, config)
    assert field in str(e.value)
    assert dh.list_connector(project, topic_name).connector_ids == []


def test_bad_requests_raw(raw, dh, project, topic_name):
    base = "/projects/%s/topics/%s/connectors/" % (project, topic_name)
    body = {"Action": "Create", "ColumnFields": column_fields, "Config": {"Endpoint": "http://x"},
            "SinkStartTime": -1}
    resp = raw.post(base + "sink_kafka", json.dumps(body).encode())
    assert resp.error_code == "InvalidParameter" and "sink_kafka" in resp.json()["ErrorMessage"]
    resp = raw.post(base + "sink_datahub", json.dumps(dict(body, Config=[])).encode())
    assert resp.error_code == "InvalidParameter"
    resp = raw.post(base + "sink_datahub", json.dumps({"Action": "Create", "Config": {
        "Endpoint": "http://x", "Project": "p", "Topic": "t", "AuthMode": "ak"}, "SinkStartTime": -7}).encode())
    assert resp.error_code == "InvalidParameter" and "SinkStartTime" in resp.json()["ErrorMessage"]
    resp = raw.post(base + "sink_datahub", json.dumps({"Action": "Frobnicate"}).encode())
    assert resp.error_code == "InvalidParameter"


def test_start_time_picks_the_first_record_at_or_after_it(dh, project, topic_name):
    dh.put_records(project, topic_name, tuple_rows(5))
    time.sleep(0.05)
    t = now_ms()
    time.sleep(0.05)
    dh.put_records(project, topic_name, tuple_rows(3, start=5))
    cid = dh.create_connector(project, topic_name, ConnectorType.SINK_OTS, column_fields,
                              configs("http://x")[ConnectorType.SINK_OTS], t).connector_id
    infos = dh.get_connector_shard_status(project, topic_name, cid).shard_status_infos
    # CurrentSequence is the last record delivered: it resumes at 5
    assert infos["0"].current_sequence == 4
    assert infos["1"].current_sequence == -1  # empty shard: starts at its end
    cid2 = dh.create_connector(project, topic_name, ConnectorType.SINK_FC, column_fields,
                               configs("http://x")[ConnectorType.SINK_FC]).connector_id
    assert dh.get_connector_shard_status(project, topic_name, cid2, "0").shard_status_infos["0"].current_sequence == -1


def test_connectors_survive_restart(sluice_factory):
    srv = sluice_factory("restart")
    dh = srv.client()
    project = unique_name("p")
    dh.create_project(project, "c")
    topic = create_tuple_topic(dh, project, schema=SCHEMA, shards=1)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_ODPS, column_fields, odps_config()).connector_id
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    dh.put_records(project, topic, tuple_rows(10))
    dh.update_connector_offset(project, topic, cid, "0", ConnectorOffset(7, -1))
    srv.restart()
    dh = srv.client()
    got = dh.get_connector(project, topic, cid)
    assert got.state == ConnectorState.CONNECTOR_STOPPED
    assert list(got.config.partition_config) == ["ds", "hh", "mm"]
    assert dh.get_connector_shard_status(project, topic, cid, "0").shard_status_infos["0"].current_sequence == 7
    dh.delete_topic(project, topic)
    topic2 = create_tuple_topic(dh, project, schema=SCHEMA, shards=1)
    assert dh.list_connector(project, topic2).connector_ids == []
