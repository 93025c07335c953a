"""Which conformance tests also run against the cluster (issue 14, Test 1).

`scripts/test.sh cluster` runs pytest with SLUICE_EXTERNAL_ENDPOINT pointing at haproxy in front
of three `sluice serve --cluster` nodes (round robin per request), in all three protocols (the
tests' own protocol matrix). conftest.py marks the tests chosen here `cluster_ok` and, against an
external endpoint, deselects every other test.

A test runs on the cluster when its module is in MODULES, or its name in TESTS, and it is not in
LEFT_OUT, and it uses none of the fixtures that start private servers (NEEDS_OWN_SERVER).
LEFT_OUT says why each excluded test stays single-node.
"""

import os

# Fixtures that start servers of their own (kill/restart, TLS): never against an external one.
NEEDS_OWN_SERVER = {"sluice_factory", "https_server", "pki"}

# Modules whose every test drives one server through its API only (tests among them that start
# servers of their own are left out by NEEDS_OWN_SERVER).
MODULES = {
    "test_projects.py",
    "test_topics.py",
    "test_shards.py",
    "test_records.py",
    "test_errors.py",
    "test_cross_protocol.py",
    "test_response_compression.py",
    "test_sdk_batch_v1.py",
    "test_sdk_behaviour.py",
    "test_sdk_codec.py",
    "test_sdk_e2e_more.py",
    "test_sdk_lz4_raw.py",
    "test_auth.py",
    "test_offsets.py",
    "test_subscriptions.py",
    "test_consumer_group.py",
    "test_connectors.py",
    "test_connector_subscription.py",
    "test_connector_datahub.py",
    "test_accounts.py",
}

# Single tests of other modules.
TESTS = set()

# Tests of the modules above left out on the cluster, with the reason (the 8 left out
# before, metadata another node changed a moment ago, pass since every request checks the
# catalog version and reloads the connector registry when it moved; cluster/http_refresh.rs).
LEFT_OUT = {
    "test_accounts.py::test_console_sign_in_takes_the_root_or_an_admin_key_only":
        "console sessions live in the memory of the node that signed in; through a round robin "
        "balancer the next page lands on another node (needs sticky sessions or shared sessions)",
}

# Modules not in MODULES, and why they stay single-node (for the record; not read by the code):
SINGLE_NODE = {
    "test_durability.py": "kills and restarts its own servers",
    "test_https.py": "TLS: its own HTTPS server",
    "test_connector_tls.py": "TLS twins of the databases; its own servers",
    "test_console.py": "browser sessions live in one node's memory; needs chromium",
    "test_metrics.py": "each node has its own /metrics listener and counters",
    "test_connector_db.py": "needs MariaDB/PostgreSQL sinks; the kill test covers the MySQL sink",
    "test_connector_es.py": "needs the osmem ES service, not started by the cluster stage",
    "test_connector_fc.py": "a local FC receiver per test; single-node",
    "test_connector_odps.py": "needs s3s-fs/ODPS fixtures of the services stage",
    "test_connector_oss.py": "needs the s3 service of the services stage",
    "test_connector_ots.py": "a local OTS server per test; single-node",
    "test_sink_compliance.py": "needs every sink's service (services stage)",
}


def runs_on_cluster(nodeid, fixturenames):
    """True when the test `nodeid` (path::name[param]) is to run against the cluster.
    SLUICE_CLUSTER_OK_ALL=1 (finding out which tests pass; never in CI) takes every test that
    needs no server of its own."""
    if NEEDS_OWN_SERVER.intersection(fixturenames):
        return False
    if os.environ.get("SLUICE_CLUSTER_OK_ALL") == "1":
        return True
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    name = nodeid.split("::")[-1].split("[", 1)[0]
    if name in LEFT_OUT or "%s::%s" % (module, name) in LEFT_OUT:
        return False
    return module in MODULES or name in TESTS or "%s::%s" % (module, name) in TESTS
