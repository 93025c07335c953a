"""Prometheus `/metrics` (issue 13): served unsigned on its own listener (`metrics_listen`), never on
the signed API port; parsed here with the `prometheus_client` OpenMetrics parser, which refuses
anything malformed. The values move as records are put and read, and as a MySQL connector syncs
(the MariaDB that scripts/services.sh starts); the series cap holds; no secret or record value
appears.
"""

import socket
import time

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from datahub.models import BlobRecord, ConnectorState, TupleRecord

from test_connector_db import NAMES, MySQL, new_table, row_for
from util import (ACCESS_KEY, all_types_schema, create_blob_topic, create_tuple_topic, cursor_of, put, read_all,
                  unique_name, wait_for)

SECRET_VALUE = "secret-record-value-7d1f"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scrape:
    """One parsed scrape: samples by (name, labels)."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.families = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def total(self, name, **labels):
        """Sum over the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= set(ls))

    def series(self, name, **labels):
        want = set(labels.items())
        return [dict(ls) for (n, ls), _ in self.samples.items() if n == name and want <= set(ls)]


class MetricsServer:
    def __init__(self, srv, port):
        self.srv = srv
        self.url = "http://127.0.0.1:%d/metrics" % port

    def scrape(self):
        resp = requests.get(self.url, timeout=10)
        assert resp.status_code == 200, resp.text[:500]
        assert resp.headers["content-type"].startswith("application/openmetrics-text"), resp.headers
        return Scrape(resp.text)


def start_metrics_server(sluice_factory, name, **config):
    port = free_port()
    config = dict({"metrics_listen": "127.0.0.1:%d" % port, "connector_batch_age_ms": 100}, **config)
    return MetricsServer(sluice_factory(name, config=config), port)


@pytest.fixture
def ms(sluice_factory):
    return start_metrics_server(sluice_factory, "metrics")


def test_the_listener_is_unsigned_and_not_the_api_port(ms):
    # No signature needed on the metrics port ...
    assert ms.scrape().get("process_open_fds") > 0
    # ... which serves nothing else,
    assert requests.get(ms.url.replace("/metrics", "/projects"), timeout=10).status_code == 404
    # and the signed API port does not serve /metrics.
    resp = requests.get(ms.srv.endpoint + "/metrics", timeout=10)
    assert resp.status_code != 200
    assert "sluice_" not in resp.text


def test_values_move_as_records_are_put_and_read(ms):
    dh = ms.srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "metrics")
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    before = ms.scrape()
    assert before.get("sluice_topic_records_in_total", project=project, topic=topic) in (None, 0)
    for protocol in ("json", "pb", "batch"):
        client = ms.srv.client(protocol)
        put(client, protocol, project, topic, [TupleRecord(schema=schema, values=row_for(i)) for i in range(10)])
    after_put = ms.scrape()
    assert after_put.get("sluice_topic_records_in_total", project=project, topic=topic) == 30
    assert after_put.get("sluice_topic_in_bytes_total", project=project, topic=topic) > 30 * 20
    for protocol in ("json", "protobuf", "batch"):
        assert after_put.get("sluice_put_duration_seconds_count", protocol=protocol) >= 1, protocol
        assert after_put.get("sluice_put_duration_seconds_sum", protocol=protocol) > 0, protocol
    # Every put was made durable by group-committed fsyncs covering its log entries: one per JSON
    # or protobuf record, one per batch.
    assert after_put.get("sluice_log_fsync_duration_seconds_count") >= 3
    assert after_put.get("sluice_log_fsync_group_entries_sum") == 10 + 10 + 1
    assert after_put.get("sluice_topic_storage_bytes", project=project, topic=topic) > 30 * 20

    for protocol in ("json", "pb", "batch"):
        got = read_all(ms.srv.client(protocol), project, topic, "0", schema)
        assert len(got) == 30
    after_get = ms.scrape()
    assert after_get.get("sluice_topic_records_out_total", project=project, topic=topic) >= 90
    assert after_get.get("sluice_topic_out_bytes_total", project=project, topic=topic) > 0
    for protocol in ("json", "protobuf", "batch"):
        assert after_get.get("sluice_get_duration_seconds_count", protocol=protocol) >= 1, protocol

    # Process metrics, from /proc.
    assert after_get.get("process_cpu_seconds_total") > 0
    assert after_get.get("process_resident_memory_bytes") > 1 << 20
    assert after_get.get("process_open_fds") > 0
    start = after_get.get("process_start_time_seconds")
    assert time.time() - 600 < start <= time.time()


def test_subscription_lag_and_consumer_group(ms):
    dh = ms.srv.client("pb")
    project = unique_name("p")
    dh.create_project(project, "metrics")
    topic = create_blob_topic(dh, project)
    put(dh, "pb", project, topic, [BlobRecord(blob_data=b"x" * 10) for _ in range(7)])
    sub_id = dh.create_subscription(project, topic, "metrics").sub_id
    labels = dict(project=project, topic=topic, subscription=sub_id)
    first = ms.scrape()
    assert first.get("sluice_subscription_lag_records", shard="0", **labels) == 7
    assert first.get("sluice_consumer_group_members", **labels) == 0
    rebalances = first.get("sluice_consumer_group_rebalances_total", **labels)
    dh.join_group(project, topic, sub_id, 30000)
    second = ms.scrape()
    assert second.get("sluice_consumer_group_members", **labels) == 1
    assert second.get("sluice_consumer_group_rebalances_total", **labels) > rebalances


def test_values_move_as_a_mysql_connector_syncs(ms):
    db = MySQL()
    dh = ms.srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "metrics")
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=2)
    table = new_table(db, "cm")
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=row_for(i)) for i in range(20)], "0")
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=row_for(i)) for i in range(20, 30)], "1")
    cid = dh.create_connector(project, topic, db.connector_type, NAMES, db.config(table, False), -1).connector_id
    labels = dict(project=project, topic=topic, connector=cid)

    def synced():
        s = ms.scrape()
        got = (s.total("sluice_connector_delivered_records_total", **labels),
               s.total("sluice_connector_lag_records", **labels))
        return got == (30, 0) or got
    wait_for(synced, "the connector's metrics to show 30 records delivered and no lag")
    s = ms.scrape()
    assert {x["shard"] for x in s.series("sluice_connector_lag_records", **labels)} == {"0", "1"}
    assert s.total("sluice_connector_sink_write_duration_seconds_count", **labels) >= 2
    assert s.get("sluice_connector_lag_seconds", shard="0", **labels) == 0
    assert s.get("sluice_connector_done_time_lag_seconds", **labels) < 60
    assert s.total("sluice_connector_discarded_records_total", **labels) == 0
    assert len(db.run("SELECT f_bigint FROM %s" % table)) == 30

    # Stopped, it falls behind: lag in records and in seconds.
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=row_for(i)) for i in range(100, 105)], "0")
    time.sleep(1.2)
    s = ms.scrape()
    assert s.get("sluice_connector_lag_records", shard="0", **labels) == 5
    assert s.get("sluice_connector_lag_records", shard="1", **labels) == 0
    assert s.get("sluice_connector_lag_seconds", shard="0", **labels) >= 1
    assert s.get("sluice_connector_done_time_lag_seconds", **labels) >= 1

    # A record MySQL refuses (f_float must be >= 0) is discarded and counted.
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_RUNNING)
    bad = row_for(200)
    bad[9] = -1.0
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=bad)], "1")

    def caught_up():
        s = ms.scrape()
        got = (s.total("sluice_connector_lag_records", **labels),
               s.total("sluice_connector_discarded_records_total", **labels))
        return got == (0, 1) or got
    wait_for(caught_up, "the connector to catch up, with one record discarded")
    s = ms.scrape()
    assert s.get("sluice_connector_errors_total", shard="1", kind="sink_bad_record", **labels) >= 1
    assert s.total("sluice_connector_delivered_records_total", **labels) == 35


def test_no_secret_or_record_value_appears(ms):
    db = MySQL()
    dh = ms.srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "metrics")
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    row = row_for(1)
    row[1] = SECRET_VALUE
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=row)])
    table = new_table(db, "cs")
    dh.create_connector(project, topic, db.connector_type, NAMES, db.config(table, False), -1)
    wait_for(lambda: len(db.run("SELECT f_bigint FROM %s" % table)) == 1 or "not yet", "the row in MySQL")
    scrape = ms.scrape()
    text = scrape.text
    assert project in text  # the scrape does cover this topic and connector
    for secret in (ACCESS_KEY, SECRET_VALUE):
        assert secret not in text
    assert "password" not in text.lower()
    # The test database's password may be a common word (it is "sluice" here): no label holds it.
    label_values = {v for (_, labels) in scrape.samples for _, v in labels}
    assert db.password not in label_values
    assert not [v for v in label_values if db.password in v]


def test_the_series_cap_holds(sluice_factory):
    # Room for one topic's four recorded series and two computed ones.
    ms = start_metrics_server(sluice_factory, "metrics-cap", metrics_max_series=6)
    dh = ms.srv.client("json")
    project = unique_name("p")
    dh.create_project(project, "metrics")
    topics = [create_blob_topic(dh, project) for _ in range(3)]
    for t in topics:
        put(dh, "json", project, t, [BlobRecord(blob_data=b"abc")])
    s = ms.scrape()
    assert len(s.series("sluice_topic_records_in_total", project=project)) == 1
    assert s.get("sluice_metrics_dropped_series_total") == 2
    assert len(s.series("sluice_topic_storage_bytes", project=project)) == 2
    assert s.get("sluice_metrics_scrape_dropped_series") == 1
    # Unlabelled metrics are not capped.
    assert s.get("sluice_put_duration_seconds_count", protocol="json") == 3


def test_a_bad_metrics_listen_is_refused_at_the_door(sluice_factory):
    with pytest.raises(AssertionError) as e:
        sluice_factory("metrics-bad", config={"metrics_listen": "localhost-9464"})
    assert "metrics_listen must be an IP address and port" in str(e.value)
    # A good address is taken as it is.
    start_metrics_server(sluice_factory, "metrics-good").scrape()
