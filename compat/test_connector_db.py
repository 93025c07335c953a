"""SINK_MYSQL / SINK_HOLOGRES end to end: pydatahub creates connectors on a live `sluice serve`,
and rows arrive in the real MariaDB / PostgreSQL that scripts/services.sh started
(SLUICE_TEST_MYSQL_* / SLUICE_TEST_PG_*; missing variables fail the tests).

The databases are read back with their own command-line clients (`mariadb`, `psql`), so the suite
needs no extra Python packages.
"""

import json
import os
import signal
import subprocess
import time
from decimal import Decimal

import pytest
from datahub.exceptions import DatahubException
from datahub.models import (AuthMode, ConnectorOffset, ConnectorState, ConnectorType, DatabaseConnectorConfig,
                            HologresConnectorConfig, TupleRecord)

from util import ALL_TYPES, all_types_schema, create_tuple_topic, put, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDS = 4
NAMES = [n for n, _ in ALL_TYPES]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run through scripts/test.sh (scripts/services.sh starts MariaDB and "
                    "PostgreSQL)" % name, pytrace=False)
    return value


def db_ctl(db, action):
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "db-ctl.sh"), db, action], check=True)


class MySQL:
    kind = "mysql"
    ddl = ("f_bigint BIGINT PRIMARY KEY, f_string VARCHAR(200), f_double DOUBLE, f_boolean BOOLEAN, "
           "f_timestamp DATETIME(6), f_decimal DECIMAL(38,10), f_integer INT, f_smallint SMALLINT, "
           "f_tinyint TINYINT, f_float FLOAT CHECK (f_float IS NULL OR f_float >= 0)")
    select = ("SELECT f_bigint, f_string, f_double, f_boolean, CAST(f_timestamp AS CHAR), "
              "CAST(f_decimal AS CHAR), f_integer, f_smallint, f_tinyint, f_float FROM {t} ORDER BY f_bigint")

    def __init__(self):
        self.host, self.port = env("SLUICE_TEST_MYSQL_HOST"), env("SLUICE_TEST_MYSQL_PORT")
        self.user, self.password = env("SLUICE_TEST_MYSQL_USER"), env("SLUICE_TEST_MYSQL_PASSWORD")
        self.database = env("SLUICE_TEST_MYSQL_DATABASE")

    def run(self, sql):
        out = subprocess.run(["mariadb", "--no-defaults", "-h", self.host, "-P", self.port, "-u", self.user,
                              "-p" + self.password, "-N", "-B", "-r",
                              "--default-character-set=utf8mb4", self.database, "-e", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines()]

    def config(self, table, ignore):
        return DatabaseConnectorConfig(self.host, self.port, self.database, self.user, self.password, table, ignore)

    connector_type = ConnectorType.SINK_MYSQL


class Postgres:
    kind = "postgres"
    ddl = ("f_bigint bigint PRIMARY KEY, f_string varchar(200), f_double float8, f_boolean boolean, "
           "f_timestamp timestamp(6), f_decimal numeric(38,10), f_integer integer, f_smallint smallint, "
           "f_tinyint smallint, f_float real CHECK (f_float IS NULL OR f_float >= 0)")
    select = ("SELECT f_bigint, f_string, f_double, CASE WHEN f_boolean THEN 1 ELSE 0 END, "
              "to_char(f_timestamp, 'YYYY-MM-DD HH24:MI:SS.US'), "
              "f_decimal::text, f_integer, f_smallint, f_tinyint, f_float FROM {t} ORDER BY f_bigint")

    def __init__(self):
        self.host, self.port = env("SLUICE_TEST_PG_HOST"), env("SLUICE_TEST_PG_PORT")
        self.user, self.password = env("SLUICE_TEST_PG_USER"), env("SLUICE_TEST_PG_PASSWORD")
        self.database = env("SLUICE_TEST_PG_DATABASE")

    def run(self, sql):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                              "-p", self.port, "-U", self.user, "-d", self.database, "-c", sql],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PGPASSWORD=self.password)).stdout
        return [line.split("\t") for line in out.splitlines()]

    def config(self, table, ignore):
        assert not ignore, "pydatahub's Hologres config has no ignore mode (upsert)"
        return HologresConnectorConfig(self.database, table, "%s:%s" % (self.host, self.port), "local",
                                       AuthMode.AK, "MICROSECOND", self.user, self.password)

    connector_type = ConnectorType.SINK_HOLOGRES


def row_for(i):
    """Every field type; the values are exact in both databases."""
    return [i, "s-%d-ünï ✓ 中文" % i, i * 1.5, i % 2 == 0, 1_700_000_000_000_000 + i * 1_000_001,
            Decimal("%d.125" % i), i * 7, i % 32_000, i % 120, i * 0.5]


def expected_text(i):
    """The row as the database client prints it (tab-separated text)."""
    v = row_for(i)
    us = v[4]
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us // 1_000_000)) + ".%06d" % (us % 1_000_000)
    return [str(v[0]), v[1], repr(v[2]).rstrip("0").rstrip(".") if v[2] != int(v[2]) else str(int(v[2])),
            "1" if v[3] else "0", ts, "%d.1250000000" % i, str(v[6]), str(v[7]), str(v[8]),
            repr(v[9]).rstrip("0").rstrip(".") if v[9] != int(v[9]) else str(int(v[9]))]


def put_rows(client, project, topic, ids, schema):
    """Spread the ids over the shards (id % SHARDS)."""
    for shard in range(SHARDS):
        recs = [TupleRecord(schema=schema, values=row_for(i)) for i in ids if i % SHARDS == shard]
        if recs:
            put(client, "json", project, topic, recs, shard_id=str(shard))


def ids_in(db, table):
    return [int(r[0]) for r in db.run("SELECT f_bigint FROM %s ORDER BY f_bigint" % table)]


def wait_ids(db, table, want):
    want = sorted(want)
    wait_for(lambda: ids_in(db, table) == want or ids_in(db, table), "%d rows in %s" % (len(want), table))


def shard_states(dh, project, topic, cid):
    return dh.get_connector_shard_status(project, topic, cid).shard_status_infos


@pytest.fixture(params=["mysql", "postgres"])
def db(request):
    return MySQL() if request.param == "mysql" else Postgres()


def new_table(db, prefix):
    table = "%s_%d_%d" % (prefix, os.getpid(), int(time.time() * 1000) % 10_000_000)
    db.run("DROP TABLE IF EXISTS %s" % table)
    db.run("CREATE TABLE %s (%s)" % (table, db.ddl))
    return table


def create(dh, project, topic, db, table, ignore=False, start_time=-1):
    return dh.create_connector(project, topic, db.connector_type, NAMES, db.config(table, ignore),
                               start_time).connector_id


# Hologres' config has no Ignore field (it always upserts), so the ignore mode exists for the
# MySQL protocol only: the combinations are listed rather than skipped.
@pytest.mark.parametrize(
    "db, ignore",
    [("mysql", False), ("mysql", True), ("postgres", False)],
    ids=["mysql-replace", "mysql-ignore", "postgres-upsert"],
    indirect=["db"],
)
def test_every_type_arrives_equal(dh, project, db, ignore):
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=SHARDS)
    table = new_table(db, "ct")
    n = 400
    put_rows(dh, project, topic, range(n), schema)
    create(dh, project, topic, db, table, ignore)
    wait_ids(db, table, range(n))
    got = db.run(db.select.format(t=table))
    assert got == [expected_text(i) for i in range(n)]
    # Re-delivered keys (the same rows again) are harmless in both modes.
    put_rows(dh, project, topic, range(0, n, 10), schema)
    time.sleep(2)
    assert db.run(db.select.format(t=table)) == [expected_text(i) for i in range(n)]


def test_stop_reset_to_time_and_start(dh, project, db):
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=SHARDS)
    table = new_table(db, "cr")
    put_rows(dh, project, topic, range(0, 40), schema)
    cid = create(dh, project, topic, db, table)
    wait_ids(db, table, range(40))
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_STOPPED)
    put_rows(dh, project, topic, range(100, 140), schema)
    time.sleep(1.5)
    reset_at = int(time.time() * 1000)
    time.sleep(0.1)
    put_rows(dh, project, topic, range(200, 240), schema)
    time.sleep(2)
    assert ids_in(db, table) == list(range(40)), "a stopped connector must not write"
    for shard in range(SHARDS):
        dh.update_connector_offset(project, topic, cid, str(shard), ConnectorOffset(-1, reset_at))
    dh.update_connector_state(project, topic, cid, ConnectorState.CONNECTOR_RUNNING)
    # Records before the reset time (100..139) are skipped; those after it (200..239) arrive.
    wait_ids(db, table, list(range(40)) + list(range(200, 240)))
    time.sleep(1)
    assert ids_in(db, table) == list(range(40)) + list(range(200, 240))


def test_sink_outage_hangs_then_catches_up(dh, project, db):
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=SHARDS)
    table = new_table(db, "co")
    put_rows(dh, project, topic, range(0, 100), schema)
    cid = create(dh, project, topic, db, table)
    wait_ids(db, table, range(100))
    db_ctl(db.kind, "stop")
    try:
        put_rows(dh, project, topic, range(100, 300), schema)

        def hanging():
            states = shard_states(dh, project, topic, cid)
            hung = [s for s in states.values() if s.state.value == "CONTEXT_HANG" and s.last_error_message]
            return True if hung else {k: (v.state, v.last_error_message) for k, v in states.items()}

        wait_for(hanging, "CONTEXT_HANG with the database error")
    finally:
        db_ctl(db.kind, "start")
    wait_ids(db, table, range(300))

    def executing():
        states = shard_states(dh, project, topic, cid)
        return all(s.state.value == "CONTEXT_EXECUTING" for s in states.values()) or states

    wait_for(executing, "all shards back to CONTEXT_EXECUTING")


def test_constraint_violation_is_discarded_and_counted(dh, project, db):
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=1)
    table = new_table(db, "cd")
    rows = [row_for(i) for i in range(50)]
    rows[17][9] = -1.0  # violates CHECK (f_float >= 0)
    rows[33][1] = "x" * 300  # longer than VARCHAR(200)
    put(dh, "json", project, topic, [TupleRecord(schema=schema, values=r) for r in rows], shard_id="0")
    cid = create(dh, project, topic, db, table)
    want = [i for i in range(50) if i not in (17, 33)]
    wait_ids(db, table, want)

    def counted():
        entry = shard_states(dh, project, topic, cid)["0"]
        return entry.discard_count == 2 or (entry.discard_count, entry.state, entry.last_error_message)

    wait_for(counted, "discard_count == 2")
    assert ids_in(db, table) == want


def test_sigkill_mid_sync_loses_nothing(sluice_factory, db):
    srv = sluice_factory("connector-crash")
    client = srv.client("json", "lz4")
    project = "pcrash%d" % (int(time.time() * 1000) % 1_000_000)
    client.create_project(project, "crash test")
    schema = all_types_schema()
    topic = create_tuple_topic(client, project, schema, shards=SHARDS)
    table = new_table(db, "ck")
    n = 4000
    for start in range(0, n, 500):
        put_rows(client, project, topic, range(start, start + 500), schema)
    create(client, project, topic, db, table)
    wait_for(lambda: len(ids_in(db, table)) > 0 or "nothing yet", "the first rows")
    srv.restart(signal.SIGKILL)
    client = srv.client("json", "lz4")
    wait_ids(db, table, range(n))


# Hologres' WriteMode is not in pydatahub's config class, so these connectors are created with raw
# requests, exactly as the console or another SDK would send them: through the API door, with the
# Endpoint pasted as the console's URL.
@pytest.mark.parametrize("mode, kept_string, f_integer", [
    ("INSERT_OR_IGNORE", True, "99"),    # the existing row stays as it was
    ("INSERT_OR_UPDATE", False, "99"),   # the connector's columns updated, f_integer kept
    ("INSERT_OR_REPLACE", False, "null"),  # the whole row replaced: f_integer back to its default
])
def test_hologres_write_mode_through_the_api(raw, dh, project, mode, kept_string, f_integer):
    db = Postgres()
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=SHARDS)
    table = new_table(db, "wm")
    db.run("INSERT INTO %s (f_bigint, f_string, f_integer) VALUES (0, 'old', 99)" % table)
    put_rows(dh, project, topic, range(8), schema)
    url = "http://%s:%s/" % (db.host, db.port)
    body = {"Action": "Create", "ColumnFields": ["f_bigint", "f_string"], "SinkStartTime": -1,
            "Config": {"Endpoint": url, "Project": db.database, "Topic": table, "InstanceId": "local",
                       "AuthMode": "ak", "AccessId": db.user, "AccessKey": db.password,
                       "TimestampUnit": "MICROSECOND", "WriteMode": mode}}
    resp = raw.post("/projects/%s/topics/%s/connectors/sink_hologres" % (project, topic), json.dumps(body))
    assert resp.status == 200, resp
    cid = resp.json()["ConnectorId"]
    # key 0 shares shard 0 with key 4, written in order: once all keys are there, key 0 is decided
    wait_ids(db, table, range(8))
    got = db.run("SELECT f_string, COALESCE(f_integer::text, 'null') FROM %s WHERE f_bigint = 0" % table)
    assert got == [["old" if kept_string else row_for(0)[1], f_integer]]
    # GET returns the normalized endpoint and the mode; pydatahub still parses it
    back = raw.get("/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)).json()["Config"]
    assert back["Endpoint"] == "%s:%s" % (db.host, db.port) and back["WriteMode"] == mode, back
    assert "AccessKey" in back  # GetConnector returns the key, as the service does
    assert dh.get_connector(project, topic, cid).config.endpoint == "%s:%s" % (db.host, db.port)
    # a bad mode is refused at the door, naming the field
    body["Config"]["WriteMode"] = "MERGE"
    resp = raw.post("/projects/%s/topics/%s/connectors/%s" % (project, topic, cid),
                    json.dumps(dict(body, Action="updateconfig")))
    assert resp.error_code == "InvalidParameter" and "Config.WriteMode" in resp.json()["ErrorMessage"], resp


def test_passwords_never_reach_the_log_or_status(server, raw, dh, project):
    """A connector whose password the database refuses hangs and says why; the password itself
    is in GetConnector (as the service returns it) but never in the log or the shard status."""
    secret = "pw-%d-never-logged" % (time.time_ns() % 10**12)
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema, shards=1)
    my, pg = MySQL(), Postgres()
    configs = {
        ConnectorType.SINK_MYSQL: DatabaseConnectorConfig(my.host, my.port, my.database, my.user, secret,
                                                          "no_table", False),
        ConnectorType.SINK_HOLOGRES: HologresConnectorConfig(pg.database, "no_table", "%s:%s" % (pg.host, pg.port),
                                                             "local", AuthMode.AK, "MICROSECOND", pg.user, secret),
    }
    for ctype, config in configs.items():
        cid = dh.create_connector(project, topic, ctype, NAMES, config).connector_id
        wait_for(lambda: any(e.state.value == "CONTEXT_HANG" and e.last_error_message
                             for e in shard_states(dh, project, topic, cid).values()),
                 "%s hangs" % ctype.value)
        infos = shard_states(dh, project, topic, cid)
        assert all(secret not in (e.last_error_message or "") for e in infos.values())
        back = raw.get("/projects/%s/topics/%s/connectors/%s" % (project, topic, cid)).json()["Config"]
        assert secret in (back.get("Password"), back.get("AccessKey")), back
    time.sleep(0.5)  # let the hang warnings reach the log file
    with open(server.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    assert "task hangs" in log
    assert secret not in log
