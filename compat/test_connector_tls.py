"""Connector TLS end to end (issue 9 item 2), through `sluice serve` and pydatahub:

- SINK_DATAHUB into a Sluice served over https (`--tls-cert/--tls-key`, conftest `https_server`):
  with `connector_tls_ca_file` = the test CA the records arrive; without it the task hangs with a
  configuration message (the certificate is not trusted), and nothing arrives;
- SINK_MYSQL / SINK_HOLOGRES with `connector_tls = "require"` into the TLS-only MariaDB and
  PostgreSQL of scripts/services.sh (they refuse plaintext): verified against SLUICE_TEST_TLS_CA the
  rows arrive; with a CA that did not sign the server the task hangs saying why.
"""

import os
import subprocess

import pytest
from datahub.models import AuthMode, ConnectorType
from datahub.models.connector import DataHubConnectorConfig

from test_connector_db import SHARDS, MySQL, Postgres, env, new_table, put_rows, shard_states, wait_for, wait_ids, NAMES
from util import (ACCESS_ID, ACCESS_KEY, ALL_TYPES, ROWS, all_types_schema, create_tuple_topic, read_all,
                  tuple_records, unique_name)

COLUMNS = [n for n, _ in ALL_TYPES]


def hang_message(dh, project, topic, cid):
    """Waits for a shard in CONTEXT_HANG with a message; returns the message."""
    found = []

    def hung():
        states = shard_states(dh, project, topic, cid)
        found[:] = [s.last_error_message for s in states.values()
                    if s.state.value == "CONTEXT_HANG" and s.last_error_message]
        return True if found else {k: (v.state, v.last_error_message) for k, v in states.items()}

    wait_for(hung, "CONTEXT_HANG with a message")
    return found[0]


@pytest.fixture
def https_target(https_server):
    """A project and a one-shard all-types topic on the HTTPS Sluice."""
    client = https_server.client()
    project = unique_name("tls")
    client.create_project(project, "https sink target")
    topic = create_tuple_topic(client, project)
    return client, project, topic


def datahub_connector(src, https_server, target):
    _, tproject, ttopic = target
    dh = src.client()
    project = unique_name("src")
    dh.create_project(project, "tls source")
    topic = create_tuple_topic(dh, project)
    cfg = DataHubConnectorConfig(https_server.endpoint, tproject, ttopic, AuthMode.AK, ACCESS_ID, ACCESS_KEY)
    cid = dh.create_connector(project, topic, ConnectorType.SINK_DATAHUB, COLUMNS, cfg).connector_id
    dh.put_records(project, topic, tuple_records(all_types_schema(), ROWS))
    return dh, project, topic, cid


def test_datahub_sink_delivers_over_https_with_the_ca_file(sluice_factory, https_server, https_target, pki):
    src = sluice_factory("src-ca", config={"connector_tls_ca_file": pki.ca})
    datahub_connector(src, https_server, https_target)
    client, tproject, ttopic = https_target
    schema = all_types_schema()

    def arrived():
        n = len(read_all(client, tproject, ttopic, "0", schema))
        return n == len(ROWS) or n

    wait_for(arrived, "%d records over https" % len(ROWS))


def test_datahub_sink_without_the_ca_hangs_with_a_configuration_message(sluice_factory, https_server,
                                                                        https_target):
    src = sluice_factory("src-noca")
    dh, project, topic, cid = datahub_connector(src, https_server, https_target)
    msg = hang_message(dh, project, topic, cid)
    assert "not trusted" in msg and "connector_tls_ca_file" in msg, msg
    client, tproject, ttopic = https_target
    assert read_all(client, tproject, ttopic, "0", all_types_schema()) == []


class TlsMySQL(MySQL):
    """The TLS-only MariaDB; the CLI connects with TLS."""

    def __init__(self):
        super().__init__()
        self.port = env("SLUICE_TEST_MYSQL_TLS_PORT")

    def run(self, sql):
        out = subprocess.run(["mariadb", "--no-defaults", "--ssl", "-h", self.host, "-P", self.port, "-u", self.user,
                              "-p" + self.password, "-N", "-B", "-r", self.database, "-e", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines()]


class TlsPostgres(Postgres):
    """The TLS-only PostgreSQL (hostssl lines only); psql connects with sslmode=require."""

    def __init__(self):
        super().__init__()
        self.port = env("SLUICE_TEST_PG_TLS_PORT")

    def run(self, sql):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                              "-p", self.port, "-U", self.user, "-d", self.database, "-c", sql],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PGPASSWORD=self.password, PGSSLMODE="require")).stdout
        return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
def test_database_sinks_require_tls_verified_against_the_ca(sluice_factory, kind):
    db = TlsMySQL() if kind == "mysql" else TlsPostgres()
    schema = all_types_schema()
    for name, ca, delivers in [("good-ca", env("SLUICE_TEST_TLS_CA"), True),
                               ("other-ca", env("SLUICE_TEST_TLS_OTHER_CA"), False)]:
        srv = sluice_factory("%s-%s" % (kind, name),
                             config={"connector_tls": "require", "connector_tls_ca_file": ca})
        dh = srv.client()
        project = unique_name("db")
        dh.create_project(project, "tls db")
        topic = create_tuple_topic(dh, project, schema, shards=SHARDS)
        table = new_table(db, "tls_%s" % name.replace("-", "_"))
        put_rows(dh, project, topic, range(40), schema)
        cid = dh.create_connector(project, topic, db.connector_type, NAMES, db.config(table, False)).connector_id
        if delivers:
            wait_ids(db, table, range(40))
        else:
            msg = hang_message(dh, project, topic, cid)
            assert "TLS is required" in msg and "not trusted" in msg and ca in msg, msg
            assert db.run("SELECT COUNT(*) FROM %s" % table) == [["0"]]
