"""Which conformance tests also run against the cluster (issue 14, Test 1).

`scripts/test.sh cluster` runs pytest with SLUICE_EXTERNAL_ENDPOINT pointing at haproxy in front
of three `sluice serve --cluster` nodes (round robin per request), in all three protocols (the
tests' own protocol matrix). conftest.py marks the tests chosen here `cluster_ok` and, against an
external endpoint, deselects every other test.

A test runs on the cluster when its module is in MODULES, or its name in TESTS, and it is not in
LEFT_OUT, and it uses none of the fixtures that start private servers (NEEDS_OWN_SERVER).
LEFT_OUT says why each excluded test stays single-node.
"""

# Fixtures that start servers of their own (kill/restart, TLS): never against an external one.
NEEDS_OWN_SERVER = {"sluice_factory", "https_server", "pki"}

# Modules whose every test drives one server through its API only.
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
}

# Single tests of other modules.
TESTS = set()

# Tests of the modules above left out on the cluster, with the reason.
LEFT_OUT = {}


def runs_on_cluster(nodeid, fixturenames):
    """True when the test `nodeid` (path::name[param]) is to run against the cluster."""
    if NEEDS_OWN_SERVER.intersection(fixturenames):
        return False
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    name = nodeid.split("::")[-1].split("[", 1)[0]
    if name in LEFT_OUT or "%s::%s" % (module, name) in LEFT_OUT:
        return False
    return module in MODULES or name in TESTS or "%s::%s" % (module, name) in TESTS
