"""Adapters of the sink compliance suite (test_sink_compliance.py): one class per sink type.

A sink joins the suite by adding one adapter here and its name to ADAPTERS. An adapter knows
how to create the target (table / topic) for the suite's records, where the real target listens
(the suite puts its own TCP proxy in front, to cut and restore the connection), the connector
config pointing at an address, how to read back what arrived, how to add a column, and which
value the target rejects.

The suite's source topic has the fields `id BIGINT, note STRING`, and later `extra STRING`
(append field). `rows()` returns what arrived, as dicts {"id", "note", "extra", "arrival"},
ordered by `arrival`: a number that grows with the order rows were written, so parent-before-
child order and re-delivery can be checked. A target that absorbs re-delivery (keyed upserts)
gets a NEW arrival number when a row is written again, so re-delivered rows stay visible.
"""

import base64
import collections
import csv
import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from datahub.models import (AuthMode, ConnectorType, DatabaseConnectorConfig, FieldType, HologresConnectorConfig,
                            OdpsConnectorConfig, OssConnectorConfig, PartitionMode, RecordSchema)
from datahub.models.connector import DataHubConnectorConfig, EsConnectorConfig, FcConnectorConfig, OtsConnectorConfig

from fc_receiver import BAD_NOTE, FcReceiver
from ots_server import OtsServer

from util import ACCESS_ID, ACCESS_KEY, read_all, unique_name

NOTE_WIDTH = 20  # the database targets' note / extra columns are VARCHAR(NOTE_WIDTH)


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run through scripts/test.sh (scripts/services.sh starts MariaDB and "
                    "PostgreSQL)" % name, pytrace=False)
    return value


def table_name(prefix):
    return "%s_%d_%d" % (prefix, os.getpid(), time.time_ns() // 1000 % 10_000_000_000)


class SinkAdapter:
    """What the compliance suite needs to know about one sink type."""

    name = None
    connector_type = None
    # True when re-delivered rows overwrite themselves (keyed REPLACE / upsert): after a crash no
    # duplicate may remain. False (no keys): duplicates remain, at most one batch per shard.
    absorbs_duplicates = True
    # False for a target that accepts every value (objects): then `bad_note()` is a value that is
    # hard to encode, which must arrive intact and not be discarded.
    rejects_records = True

    def server_config(self, records, age_ms):
        """Extra server config keys for the suite's small batches: the global keys reach a sink
        type only where its own batch defaults leave them open (SINK_MYSQL's 5,000 records,
        SINK_OSS's 5 minutes), so the type's `[connector_batch.<type>]` is set too."""
        kind = self.connector_type.value.lower()
        return {"connector_batch.%s.records" % kind: records, "connector_batch.%s.age_ms" % kind: age_ms}

    def prepare(self, sluice_factory):
        """Creates a fresh target for one test."""
        raise NotImplementedError

    def address(self):
        """(host, port) where the real target listens."""
        raise NotImplementedError

    def config(self, host, port):
        """The pydatahub connector config, with the target at host:port."""
        raise NotImplementedError

    def rows(self):
        """What arrived, ordered by arrival (see the module doc)."""
        raise NotImplementedError

    def add_column(self, name):
        """Adds a nullable STRING-like column `name` to the target."""
        raise NotImplementedError

    def bad_note(self):
        """A `note` value (or None) the target rejects for that record only."""
        raise NotImplementedError


class _Sql(SinkAdapter):
    def _query(self, sql):
        raise NotImplementedError

    def rows(self):
        extra = "extra" if self._has_extra else "NULL"
        out = []
        for r in self._query("SELECT id, note, %s, arrival FROM %s ORDER BY arrival" % (extra, self.table)):
            out.append({"id": int(r[0]), "note": _null(r[1]), "extra": _null(r[2]), "arrival": int(r[3])})
        return out

    def bad_note(self):
        return "x" * (NOTE_WIDTH + 30)  # longer than the VARCHAR column: the database refuses it


def _null(text):
    return None if text == "NULL" or text == "\\N" else text


class MySql(_Sql):
    """SINK_MYSQL against MariaDB. REPLACE INTO on the primary key absorbs re-delivery; REPLACE
    deletes and inserts, so `arrival` (AUTO_INCREMENT) is new for a re-written row."""

    name = "mysql"
    connector_type = ConnectorType.SINK_MYSQL

    def __init__(self):
        self.host, self.port = env("SLUICE_TEST_MYSQL_HOST"), env("SLUICE_TEST_MYSQL_PORT")
        self.user, self.password = env("SLUICE_TEST_MYSQL_USER"), env("SLUICE_TEST_MYSQL_PASSWORD")
        self.database = env("SLUICE_TEST_MYSQL_DATABASE")
        self.table = None
        self._has_extra = False

    def _query(self, sql):
        out = subprocess.run(["mariadb", "--no-defaults", "-h", self.host, "-P", self.port, "-u", self.user,
                              "-p" + self.password, "-N", "-B", "--default-character-set=utf8mb4", self.database,
                              "-e", sql], check=True, capture_output=True, text=True, timeout=30).stdout
        return [line.split("\t") for line in out.splitlines()]

    def prepare(self, sluice_factory):
        self.table = table_name("sc" + self.name)
        self._query("CREATE TABLE %s (id BIGINT PRIMARY KEY, note VARCHAR(%d), "
                    "arrival BIGINT NOT NULL AUTO_INCREMENT UNIQUE)" % (self.table, NOTE_WIDTH))

    def address(self):
        return self.host, self.port

    def config(self, host, port):
        return DatabaseConnectorConfig(host, str(port), self.database, self.user, self.password, self.table, False)

    def add_column(self, name):
        self._query("ALTER TABLE %s ADD COLUMN %s VARCHAR(%d) NULL" % (self.table, name, NOTE_WIDTH))
        self._has_extra = True


class Ads(MySql):
    """SINK_ADS (AnalyticDB for MySQL) speaks the MySQL protocol: the same target, its own type."""

    name = "ads"
    connector_type = ConnectorType.SINK_ADS


class Hologres(_Sql):
    """SINK_HOLOGRES against PostgreSQL. The upsert on the primary key absorbs re-delivery; a
    BEFORE UPDATE trigger gives an upserted row a new `arrival`, as REPLACE does in MySQL."""

    name = "hologres"
    connector_type = ConnectorType.SINK_HOLOGRES

    def __init__(self):
        self.host, self.port = env("SLUICE_TEST_PG_HOST"), env("SLUICE_TEST_PG_PORT")
        self.user, self.password = env("SLUICE_TEST_PG_USER"), env("SLUICE_TEST_PG_PASSWORD")
        self.database = env("SLUICE_TEST_PG_DATABASE")
        self.table = None
        self._has_extra = False

    def _query(self, sql):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-P", "null=NULL", "-v", "ON_ERROR_STOP=1",
                              "-h", self.host, "-p", self.port, "-U", self.user, "-d", self.database, "-c", sql],
                             check=True, capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, PGPASSWORD=self.password)).stdout
        return [line.split("\t") for line in out.splitlines()]

    def prepare(self, sluice_factory):
        t = self.table = table_name("sc" + self.name)
        self._query("CREATE TABLE %s (id bigint PRIMARY KEY, note varchar(%d), arrival bigserial)" % (t, NOTE_WIDTH))
        self._query("CREATE FUNCTION %s_arr() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "NEW.arrival := nextval(pg_get_serial_sequence('%s', 'arrival')); RETURN NEW; END $$" % (t, t))
        self._query("CREATE TRIGGER %s_arr BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s_arr()" % (t, t, t))

    def address(self):
        return self.host, self.port

    def config(self, host, port):
        return HologresConnectorConfig(self.database, self.table, "%s:%s" % (host, port), "local", AuthMode.AK,
                                       "MICROSECOND", self.user, self.password)

    def add_column(self, name):
        self._query("ALTER TABLE %s ADD COLUMN %s varchar(%d)" % (self.table, name, NOTE_WIDTH))
        self._has_extra = True


class Datahub(SinkAdapter):
    """SINK_DATAHUB into a topic on a second Sluice. A topic has no keys: re-delivered records
    remain as duplicates (at most one batch per shard after a crash). The target topic has ONE
    shard, which every source shard writes into, so its sequence is the arrival order. Its
    `note` field is NOT NULL: the target refuses a record with a NULL note."""

    name = "datahub"
    connector_type = ConnectorType.SINK_DATAHUB
    absorbs_duplicates = False

    def __init__(self):
        self.srv = self.client = self.project = self.topic = None

    def prepare(self, sluice_factory):
        self.srv = sluice_factory("sink-target")
        self.client = self.srv.client()
        self.project = unique_name("dst")
        self.client.create_project(self.project, "sink compliance target")
        self.topic = unique_name("t")
        schema = RecordSchema.from_lists(["id", "note"], [FieldType.BIGINT, FieldType.STRING], ["", ""],
                                         [False, False])
        self.client.create_tuple_topic(self.project, self.topic, 1, 1, schema, "sink compliance target")
        self.client.wait_shards_ready(self.project, self.topic, 10)

    def address(self):
        return "127.0.0.1", self.srv.port

    def config(self, host, port):
        return DataHubConnectorConfig("http://%s:%s" % (host, port), self.project, self.topic, AuthMode.AK,
                                      ACCESS_ID, ACCESS_KEY)

    def rows(self):
        schema = self.client.get_topic(self.project, self.topic).record_schema
        names = [f.name for f in schema.field_list]
        out = []
        for rec in read_all(self.client, self.project, self.topic, "0", schema=schema):
            values = dict(zip(names, rec.values))
            out.append({"id": values["id"], "note": values["note"], "extra": values.get("extra"),
                        "arrival": rec.sequence})
        return out

    def add_column(self, name):
        self.client.append_field(self.project, self.topic, name, FieldType.STRING)

    def bad_note(self):
        return None


def es_request(endpoint, method, path, body=None, content_type="application/json", auth=None):
    """One HTTP call to an Elasticsearch / OpenSearch endpoint; returns (status, parsed JSON)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(endpoint + path, data=data, method=method, headers={"Content-Type": content_type})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def es_search_all(endpoint, index):
    """Every document of `index` (refreshed first), as hits with `_seq_no`."""
    es_request(endpoint, "POST", "/%s/_refresh" % index)
    status, body = es_request(endpoint, "POST", "/%s/_search" % index,
                              {"size": 10000, "seq_no_primary_term": True, "query": {"match_all": {}}})
    assert status == 200, body
    return body["hits"]["hits"]


# The compliance index's `note.chk` sub-field is a date in this format: every note the suite writes
# ("n<id>") parses, and BAD_NOTE does not, so the cluster refuses that document alone
# (mapper_parsing_exception), as a real Elasticsearch does.
NOTE_FORMAT = "||".join("'n'" + "S" * k for k in range(1, 7))


class Es(SinkAdapter):
    """SINK_ES into osmem-server (an OpenSearch API emulator). `_id` comes from `IDFields` = [id],
    so re-delivery overwrites a document; every write of a document takes a new `_seq_no` (one
    primary shard), which is the arrival order. ProxyMode is true: the suite's proxy is the endpoint
    (with discovery the connector would go around it to the node's published address)."""

    name = "es"
    connector_type = ConnectorType.SINK_ES

    def __init__(self):
        self.endpoint = env("SLUICE_TEST_ES_ENDPOINT")
        self.index = None

    def prepare(self, sluice_factory):
        self.index = table_name("sces")
        mapping = {"settings": {"number_of_shards": 1},
                   "mappings": {"properties": {"id": {"type": "long"},
                                               "note": {"type": "keyword", "fields": {
                                                   "chk": {"type": "date", "format": NOTE_FORMAT}}}}}}
        status, body = es_request(self.endpoint, "PUT", "/" + self.index, mapping)
        assert status == 200, body

    def address(self):
        host, port = self.endpoint.rsplit("/", 1)[-1].rsplit(":", 1)
        return host, int(port)

    def config(self, host, port):
        return EsConnectorConfig(self.index, "http://%s:%s" % (host, port), "", "", ["id"], [], True)

    def rows(self):
        out = []
        for h in es_search_all(self.endpoint, self.index):
            src = h["_source"]
            out.append({"id": src["id"], "note": src.get("note"), "extra": src.get("extra"),
                        "arrival": h["_seq_no"]})
        out.sort(key=lambda r: r["arrival"])
        return out

    def add_column(self, name):
        status, body = es_request(self.endpoint, "PUT", "/%s/_mapping" % self.index,
                                  {"properties": {name: {"type": "keyword"}}})
        assert status == 200, body

    def bad_note(self):
        return "not-a-note"




class Fc(SinkAdapter):
    """SINK_FC invoking a function on compat/fc_receiver.py, which checks every request's
    signature with the vendor's SDK code and records the payloads: those are the target. An
    invocation has no keys: re-delivered records remain as duplicates (at most one batch per
    shard after a crash). `arrival` is the receiver's count of records in the order they came.
    A function takes any field, so add_column has nothing to create; the function refuses a
    record whose note is BAD_NOTE (an HTTP 200 with X-Fc-Error-Type)."""

    name = "fc"
    connector_type = ConnectorType.SINK_FC
    absorbs_duplicates = False

    def __init__(self):
        self.receiver = None

    def prepare(self, sluice_factory):
        self.receiver = FcReceiver()

    def address(self):
        return self.receiver.host, self.receiver.port

    def config(self, host, port):
        return FcConnectorConfig("http://%s:%s" % (host, port), "compliance", "sink", AuthMode.AK,
                                 self.receiver.access_id, self.receiver.access_key)

    def rows(self):
        assert not self.receiver.signature_failures, self.receiver.signature_failures[:3]
        out = []
        for arrival, function, rec in self.receiver.records():
            assert function == "compliance$sink", function
            fields = rec["fields"]
            out.append({"id": fields["id"], "note": fields["note"], "extra": fields.get("extra"),
                        "arrival": arrival})
        return out

    def add_column(self, name):
        pass

    def bad_note(self):
        return BAD_NOTE




class Oss(SinkAdapter):
    """SINK_OSS into a bucket of s3s-fs (scripts/services.sh), which keeps each object as a file
    at SLUICE_TEST_S3_DIR/<bucket>/<key>. Objects are CSV in ColumnFields order. An object's
    name is deterministic (shard, first and last position), so a re-delivery with the same
    boundaries overwrites it, and one with other boundaries deletes the crashed attempt's
    object: absorbs_duplicates. `arrival` is the object's mtime (ns) * 10^6 + its line, ties
    broken by shard and position. Objects accept every value."""

    name = "oss"
    connector_type = ConnectorType.SINK_OSS
    absorbs_duplicates = True
    rejects_records = False

    def __init__(self):
        self.port = env("SLUICE_TEST_S3_PORT")
        self.root = env("SLUICE_TEST_S3_DIR")
        self.ak, self.sk = env("SLUICE_TEST_S3_ACCESS_KEY"), env("SLUICE_TEST_S3_SECRET_KEY")
        self.bucket = None

    def prepare(self, sluice_factory):
        self.bucket = table_name("sc-oss").replace("_", "-")
        os.makedirs(os.path.join(self.root, self.bucket))  # s3s-fs: a bucket is a directory

    def address(self):
        return "127.0.0.1", self.port

    def config(self, host, port):
        return OssConnectorConfig("http://%s:%s" % (host, port), self.bucket, "compliance", "%Y%m%d/%H%M", 60,
                                  AuthMode.AK, self.ak, self.sk)

    def objects(self):
        """[(sort key, path)] of every complete object in the bucket, oldest first."""
        out = []
        base = os.path.join(self.root, self.bucket)
        for d, _, files in os.walk(base):
            for f in files:
                if not f.endswith(".csv"):
                    continue  # s3s-fs's own temporary / metadata files
                path = os.path.join(d, f)
                shard, first = f.split("_")[:2]
                out.append(((os.stat(path).st_mtime_ns, int(shard), first), path))
        return sorted(out)

    def rows(self):
        out = []
        last_mtime, n = None, 0
        for (mtime, _, _), path in self.objects():
            if mtime != last_mtime:
                last_mtime, n = mtime, 0  # lines of objects with the same mtime count on
            with open(path, newline="") as f:
                text = f.read()
            for rec in csv.reader(io.StringIO(text, newline="")):
                extra = rec[2] if len(rec) > 2 and rec[2] != "" else None
                out.append({"id": int(rec[0]), "note": rec[1] if rec[1] != "" else None, "extra": extra,
                            "arrival": mtime * 1_000_000 + n})
                n += 1
        return out

    def add_column(self, name):
        pass  # objects have no schema: the connector's new column is a new CSV column

    def bad_note(self):
        return 'a,"b"\nc'


class Odps(SinkAdapter):
    """SINK_ODPS into an s3:// warehouse on s3s-fs: a Hive-partitioned Parquet table (SYSTEM_TIME,
    `ds=%Y%m%d`) whose files s3s-fs keeps at SLUICE_TEST_S3_DIR/<bucket>/wh/sc.db/events/ds=../.
    A re-delivery from the checkpoint skips the rows already in a file of the same delivery
    (read from the listed object names): absorbs_duplicates. `arrival` is the file's mtime (ns)
    * 10^6 + its row, ties broken by shard and position. Parquet accepts every value."""

    name = "odps"
    connector_type = ConnectorType.SINK_ODPS
    absorbs_duplicates = True
    rejects_records = False

    def __init__(self):
        self.port = env("SLUICE_TEST_S3_PORT")
        self.root = env("SLUICE_TEST_S3_DIR")
        self.ak, self.sk = env("SLUICE_TEST_S3_ACCESS_KEY"), env("SLUICE_TEST_S3_SECRET_KEY")
        self.bucket = None

    def prepare(self, sluice_factory):
        self.bucket = table_name("sc-odps").replace("_", "-")
        os.makedirs(os.path.join(self.root, self.bucket))  # s3s-fs: a bucket is a directory

    def address(self):
        return "127.0.0.1", self.port

    def config(self, host, port):
        return OdpsConnectorConfig("sc", "events", "s3://%s/wh" % self.bucket, "http://%s:%s" % (host, port),
                                   self.ak, self.sk, PartitionMode.SYSTEM_TIME, 15,
                                   collections.OrderedDict([("ds", "%Y%m%d")]))

    def files(self):
        """[(sort key, path)] of every data file of the table, oldest first."""
        out = []
        base = os.path.join(self.root, self.bucket, "wh", "sc.db", "events")
        for d, _, files in os.walk(base):
            for f in files:
                if not (f.startswith("shard-") and f.endswith(".parquet")):
                    continue  # _SUCCESS markers, s3s-fs's own temporary / metadata files
                path = os.path.join(d, f)
                out.append(((os.stat(path).st_mtime_ns, f), path))
        return sorted(out)

    def rows(self):
        import duckdb
        out = []
        last_mtime, n = None, 0
        con = duckdb.connect()
        try:
            for (mtime, _), path in self.files():
                if mtime != last_mtime:
                    last_mtime, n = mtime, 0  # rows of files with the same mtime count on
                cur = con.execute("SELECT * FROM read_parquet(?)", [path])
                names = [c[0] for c in cur.description]
                for rec in cur.fetchall():
                    r = dict(zip(names, rec))
                    out.append({"id": r["id"], "note": r["note"], "extra": r.get("extra"),
                                "arrival": mtime * 1_000_000 + n})
                    n += 1
        finally:
            con.close()
        return out

    def add_column(self, name):
        pass  # files have their own schema: the connector's new column is in the new files

    def bad_note(self):
        return 'a,"b"\nc \u00e9\u6e56'


class Ots(SinkAdapter):
    """SINK_OTS into a table of compat/ots_server.py, a Tablestore test server built on the official
    `tablestore` package (it decodes every request with the package's code and checks its
    signature). The table's primary key is `id` (INTEGER): PUT rows replace themselves, so
    re-delivery leaves no duplicate (absorbs_duplicates), and every write gets a new `arrival`.
    Attribute columns need no schema, so add_column has nothing to create. The server refuses a
    string cell longer than NOTE_WIDTH bytes (as the service refuses one over 2 MB) with the
    per-row error OTSParameterInvalid."""

    name = "ots"
    connector_type = ConnectorType.SINK_OTS

    def __init__(self):
        self.server = None
        self.table = None

    def prepare(self, sluice_factory):
        self.server = OtsServer(max_cell_bytes=NOTE_WIDTH)
        self.table = table_name("scots")
        self.server.create_table(self.table, [("id", "INTEGER")])

    def address(self):
        return self.server.host, self.server.port

    def config(self, host, port):
        return OtsConnectorConfig("http://%s:%s" % (host, port), self.server.instance, self.table, AuthMode.AK,
                                  self.server.access_id, self.server.access_key)

    def rows(self):
        assert not self.server.signature_failures, self.server.signature_failures[:3]
        out = []
        for (key,), row in self.server.rows(self.table).items():
            c = row["columns"]
            out.append({"id": key, "note": c.get("note"), "extra": c.get("extra"), "arrival": row["arrival"]})
        return sorted(out, key=lambda r: r["arrival"])

    def add_column(self, name):
        pass

    def bad_note(self):
        return "x" * (NOTE_WIDTH + 30)


ADAPTERS = {a.name: a for a in (MySql, Ads, Hologres, Datahub, Es, Fc, Oss, Odps, Ots)}
