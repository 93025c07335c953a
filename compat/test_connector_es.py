"""SINK_ES end to end (issue 11 item 1), through `sluice serve` and pydatahub, into osmem-server
(SLUICE_TEST_ES_ENDPOINT, scripts/services.sh), with the fault-injecting front of es_front.py for
what osmem-server does not do itself (429 items, basic auth, TLS, several nodes):

- every type arrives with equal values, each document searched back by its `_id` (from IDFields,
  and derived from shard/sequence/index without them);
- 429 / es_rejected_execution items are sent again alone, and arrive; nothing is discarded;
- basic auth: the right password writes; a wrong one hangs with the cluster's 401 and writes nothing;
- https with `connector_tls_ca_file` = the test CA writes; without the CA the task hangs saying the
  certificate is not trusted;
- ProxyMode false discovers the HTTP nodes (`_nodes/http`) and spreads `_bulk` over them;
  ProxyMode true sends everything to the endpoint.
SIGKILL, outage → HANG → recovery and bad records are the compliance suite's (adapter `es`).
"""

import urllib.parse
from decimal import Decimal

import pytest
from datahub.models import ConnectorType, FieldType, RecordSchema, TupleRecord
from datahub.models.connector import EsConnectorConfig

from es_front import EsFront
from sink_adapters import env, es_request, es_search_all, table_name
from util import (ALL_TYPES, NULL_ROW, ROWS, all_types_schema, create_tuple_topic, put, tuple_records, unique_name,
                  wait_for)

SMALL_BATCHES = {"connector_batch_records": 5, "connector_batch_age_ms": 20}


@pytest.fixture
def es():
    return env("SLUICE_TEST_ES_ENDPOINT")


def new_index(es, properties=None):
    index = table_name("es")
    body = {"settings": {"number_of_shards": 1}}
    if properties:
        body["mappings"] = {"properties": properties}
    status, out = es_request(es, "PUT", "/" + index, body)
    assert status == 200, out
    return index


class Source:
    """A private server and a one-shard topic of `id BIGINT, note STRING`."""

    def __init__(self, sluice_factory, name="source", config=None):
        self.srv = sluice_factory(name, config=dict(SMALL_BATCHES, **(config or {})))
        self.dh = self.srv.client()
        self.project = unique_name("es")
        self.dh.create_project(self.project, "es sink")
        self.topic = unique_name("t")
        self.schema = RecordSchema.from_lists(["id", "note"], [FieldType.BIGINT, FieldType.STRING])
        self.dh.create_tuple_topic(self.project, self.topic, 1, 1, self.schema, "es sink")
        self.dh.wait_shards_ready(self.project, self.topic, 10)

    def put(self, ids):
        recs = [TupleRecord(schema=self.schema, values=[i, "n%d" % i]) for i in ids]
        put(self.dh, "json", self.project, self.topic, recs)

    def connect(self, cfg, columns=("id", "note")):
        return self.dh.create_connector(self.project, self.topic, ConnectorType.SINK_ES, list(columns),
                                        cfg).connector_id

    def shard(self, cid):
        return self.dh.get_connector_shard_status(self.project, self.topic, cid).shard_status_infos["0"]

    def hang_message(self, cid):
        def hung():
            s = self.shard(cid)
            return True if s.state.value == "CONTEXT_HANG" and s.last_error_message else (
                s.state.value, s.last_error_message)
        wait_for(hung, "CONTEXT_HANG with a message")
        return self.shard(cid).last_error_message


def docs_by_id(es, index):
    return {h["_id"]: h["_source"] for h in es_search_all(es, index)}


def test_every_type_arrives_equal_searched_back_by_id(server, dh, es):
    names = [n for n, _ in ALL_TYPES]
    project = unique_name("es")
    dh.create_project(project, "es types")
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    rows = [list(r) for r in ROWS] + [list(NULL_ROW)]
    put(dh, "json", project, topic, tuple_records(schema, rows))
    # an explicit mapping: dynamic mapping would make f_double a float, which overflows
    mapping = {"f_bigint": {"type": "long"}, "f_string": {"type": "keyword"}, "f_double": {"type": "double"},
               "f_boolean": {"type": "boolean"}, "f_timestamp": {"type": "long"}, "f_decimal": {"type": "keyword"},
               "f_integer": {"type": "integer"}, "f_smallint": {"type": "short"}, "f_tinyint": {"type": "byte"},
               "f_float": {"type": "float"}}
    by_key = new_index(es, mapping)
    by_pos = new_index(es, mapping)
    # IDFields: f_integer and f_string (ROWS only: a null id is a bad record); none: shard_seq_index.
    dh.create_connector(project, topic, ConnectorType.SINK_ES, names,
                        EsConnectorConfig(by_key, es, "", "", ["f_integer", "f_string"], [], True))
    dh.create_connector(project, topic, ConnectorType.SINK_ES, names,
                        EsConnectorConfig(by_pos, es, "", "", [], [], True))

    def fetch(index, _id):
        status, body = es_request(es, "GET", "/%s/_doc/%s" % (index, urllib.parse.quote(_id, safe="")))
        return body["_source"] if status == 200 and body.get("found") else None

    def equal(doc, row):
        for (name, ftype), want in zip(ALL_TYPES, row):
            got = doc[name]
            if want is None or ftype not in (FieldType.DECIMAL,):
                assert got == want, (name, got, want)
            else:
                assert Decimal(got) == want, (name, got, want)

    wait_for(lambda: all(fetch(by_pos, "0_%d_0" % i) for i in range(len(rows))), "every row by position id")
    for i, row in enumerate(rows):
        equal(fetch(by_pos, "0_%d_0" % i), row)
    wait_for(lambda: all(fetch(by_key, "%d,%s" % (r[6], r[1])) for r in ROWS), "every row by IDFields")
    for row in ROWS:
        equal(fetch(by_key, "%d,%s" % (row[6], row[1])), row)
    # the NULL row has no id: it is discarded and counted, not written under a made-up id
    assert len(es_search_all(es, by_key)) == len(ROWS)


def test_rejected_items_are_retried_alone_and_arrive(sluice_factory, es):
    index = new_index(es)
    front = EsFront(es, reject={"3": 2, "4": 1})
    try:
        src = Source(sluice_factory)
        src.put(range(10))
        cid = src.connect(EsConnectorConfig(index, front.url, "", "", ["id"], [], True))
        wait_for(lambda: len(es_search_all(es, index)) == 10 or len(es_search_all(es, index)), "10 documents")
        docs = docs_by_id(es, index)
        assert docs == {str(i): {"id": i, "note": "n%d" % i} for i in range(10)}
        bulks = front.bulk_ids()
        # the rejected items went again in requests of their own, without the written ones
        assert any(set(b) <= {"3", "4"} and "3" in b for b in bulks), bulks
        assert sum(b.count("3") for b in bulks) == 3, bulks
        assert sum(b.count("4") for b in bulks) == 2, bulks
        s = src.shard(cid)
        assert s.discard_count == 0, s.last_error_message
    finally:
        front.close()


def test_basic_auth(sluice_factory, es):
    index = new_index(es)
    front = EsFront(es, auth=("elastic", "s3cret-pw"))
    try:
        src = Source(sluice_factory)
        src.put(range(6))
        bad = src.connect(EsConnectorConfig(index, front.url, "elastic", "wrong-pw", ["id"], [], True))
        msg = src.hang_message(bad)
        assert "401" in msg and "User and Password" in msg, msg
        assert "wrong-pw" not in msg
        assert es_search_all(es, index) == []
        src.dh.delete_connector(src.project, src.topic, bad)
        src.connect(EsConnectorConfig(index, front.url, "elastic", "s3cret-pw", ["id"], [], True))
        wait_for(lambda: len(es_search_all(es, index)) == 6 or len(es_search_all(es, index)), "6 documents")
        assert docs_by_id(es, index) == {str(i): {"id": i, "note": "n%d" % i} for i in range(6)}
    finally:
        front.close()


def test_https_with_the_ca_file(sluice_factory, es, pki):
    index = new_index(es)
    front = EsFront(es, auth=("elastic", "pw"), tls=pki)
    assert front.url.startswith("https://")
    try:
        untrusting = Source(sluice_factory, "no-ca")
        untrusting.put(range(3))
        cid = untrusting.connect(EsConnectorConfig(index, front.url, "elastic", "pw", ["id"], [], True))
        msg = untrusting.hang_message(cid)
        assert "not trusted" in msg and "connector_tls_ca_file" in msg, msg
        assert es_search_all(es, index) == []

        src = Source(sluice_factory, "with-ca", config={"connector_tls_ca_file": pki.ca})
        src.put(range(8))
        src.connect(EsConnectorConfig(index, front.url, "elastic", "pw", ["id"], [], True))
        wait_for(lambda: len(es_search_all(es, index)) == 8 or len(es_search_all(es, index)), "8 documents")
        assert docs_by_id(es, index) == {str(i): {"id": i, "note": "n%d" % i} for i in range(8)}
    finally:
        front.close()


def test_proxy_mode_false_spreads_bulks_over_discovered_nodes(sluice_factory, es):
    index = new_index(es)
    node_a, node_b = EsFront(es), EsFront(es)
    entry = EsFront(es, nodes=[node_a.url, node_b.url])
    try:
        src = Source(sluice_factory)
        src.put(range(40))  # batches of 5: several _bulk requests
        src.connect(EsConnectorConfig(index, entry.url, "", "", ["id"], [], False))
        wait_for(lambda: len(es_search_all(es, index)) == 40 or len(es_search_all(es, index)), "40 documents")
        assert ("GET", "/_nodes/http") in entry.paths, entry.paths
        assert entry.bulk_ids() == [], "ProxyMode false must not send _bulk to the endpoint"
        assert node_a.bulk_ids() and node_b.bulk_ids(), (node_a.bulk_ids(), node_b.bulk_ids())
        sent = sorted(int(i) for b in node_a.bulk_ids() + node_b.bulk_ids() for i in b)
        assert sent == list(range(40)), sent

        # ProxyMode true: everything through the endpoint, no discovery
        index2 = new_index(es)
        proxy = EsFront(es)
        try:
            cid = src.dh.create_connector(src.project, src.topic, ConnectorType.SINK_ES, ["id", "note"],
                                          EsConnectorConfig(index2, proxy.url, "", "", ["id"], [], True),
                                          ).connector_id
            assert cid
            wait_for(lambda: len(es_search_all(es, index2)) == 40 or len(es_search_all(es, index2)),
                     "40 documents")
            assert ("GET", "/_nodes/http") not in proxy.paths
            assert sum(len(b) for b in proxy.bulk_ids()) >= 40
        finally:
            proxy.close()
    finally:
        for f in (entry, node_a, node_b):
            f.close()
