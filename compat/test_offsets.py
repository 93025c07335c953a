"""Subscription offsets (protocol doc §4.11): sessions incremented per open, commits checked
against the session and version, reset by sequence or time, durable across restarts, removed
with their subscription."""

import pytest
from datahub.exceptions import DatahubException, InvalidOperationException, OffsetResetException
from datahub.models import OffsetWithSession, OffsetWithVersion

from consumer_util import keyed_topic, produce
from util import now_ms


def commit(dh, project, topic, sub_id, shard, seq, ts, version, session):
    dh.update_subscription_offset(project, topic, sub_id,
                                  {shard: OffsetWithSession(seq, ts, version, session)})


def test_open_increments_session_and_commit_checks_it(dh, project):
    topic, sub_id = keyed_topic(dh, project, shards=2)
    first = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0", "1"]).offsets
    assert set(first) == {"0", "1"}
    for o in first.values():
        assert (o.sequence, o.timestamp, o.version, o.session_id) == (-1, -1, 0, 1)
    commit(dh, project, topic, sub_id, "0", 5, 1000, 0, 1)

    second = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert (second.sequence, second.timestamp, second.session_id) == (5, 1000, 2)

    # the first opener's session is stale now
    with pytest.raises(InvalidOperationException) as e:
        commit(dh, project, topic, sub_id, "0", 6, 1001, 0, 1)
    assert e.value.error_code == "OffsetSessionChanged"
    commit(dh, project, topic, sub_id, "0", 7, 1002, 0, 2)

    # a shard never opened has no session
    topic2, sub2 = keyed_topic(dh, project, shards=1)
    with pytest.raises(InvalidOperationException) as e:
        commit(dh, project, topic2, sub2, "0", 1, 1, 0, 0)
    assert e.value.error_code == "OffsetSessionClosed"

    got = dh.get_subscription_offset(project, topic, sub_id).offsets
    assert (got["0"].sequence, got["0"].timestamp) == (7, 1002)
    assert (got["1"].sequence, got["1"].timestamp) == (-1, -1)


def test_commit_is_all_or_nothing(dh, project):
    topic, sub_id = keyed_topic(dh, project, shards=2)
    dh.init_and_get_subscription_offset(project, topic, sub_id, ["0", "1"])
    dh.init_and_get_subscription_offset(project, topic, sub_id, ["1"])  # shard 1 now at session 2
    with pytest.raises(InvalidOperationException):
        dh.update_subscription_offset(project, topic, sub_id, {
            "0": OffsetWithSession(3, 30, 0, 1), "1": OffsetWithSession(4, 40, 0, 1)})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0", "1"]).offsets
    assert got["0"].sequence == -1 and got["1"].sequence == -1
    dh.update_subscription_offset(project, topic, sub_id, {
        "0": OffsetWithSession(3, 30, 0, 1), "1": OffsetWithSession(4, 40, 0, 2)})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0", "1"]).offsets
    assert got["0"].sequence == 3 and got["1"].sequence == 4


def test_reset_by_sequence_and_time_bumps_version(dh, project, endpoint):
    topic, sub_id = keyed_topic(dh, project, shards=1)
    produce(endpoint, project, topic, 10)
    opened = dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    commit(dh, project, topic, sub_id, "0", 8, now_ms(), opened.version, opened.session_id)

    dh.reset_subscription_offset(project, topic, sub_id, {"0": OffsetWithVersion(2, 1234, 0)})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert (got.sequence, got.timestamp, got.version) == (2, 1234, opened.version + 1)
    # a commit made with the old version is refused, with the new one accepted
    with pytest.raises(OffsetResetException) as e:
        commit(dh, project, topic, sub_id, "0", 9, now_ms(), opened.version, opened.session_id)
    assert e.value.error_code == "OffsetReseted"
    commit(dh, project, topic, sub_id, "0", 3, 1235, got.version, opened.session_id)

    t = now_ms() - 60_000
    dh.reset_subscription_offset(project, topic, sub_id, {"0": {"Sequence": -1, "Timestamp": t}})
    got = dh.get_subscription_offset(project, topic, sub_id, ["0"]).offsets["0"]
    assert (got.sequence, got.timestamp, got.version) == (-1, t, opened.version + 2)


def test_offsets_survive_restart_and_die_with_subscription(sluice_factory):
    srv = sluice_factory("offsets")
    dh = srv.client("json")
    dh.create_project("offp", "")
    topic, sub_id = keyed_topic(dh, "offp", shards=2)
    dh.init_and_get_subscription_offset("offp", topic, sub_id, ["0", "1"])
    dh.update_subscription_offset("offp", topic, sub_id, {
        "0": OffsetWithSession(11, 111, 0, 1), "1": OffsetWithSession(22, 222, 0, 1)})

    import signal
    srv.restart(signal.SIGKILL)
    dh = srv.client("json")
    got = dh.get_subscription_offset("offp", topic, sub_id).offsets
    assert (got["0"].sequence, got["0"].timestamp, got["0"].session_id) == (11, 111, 1)
    assert (got["1"].sequence, got["1"].timestamp) == (22, 222)
    # the session survives too: the same opener may keep committing
    dh.update_subscription_offset("offp", topic, sub_id, {"0": OffsetWithSession(12, 112, 0, 1)})
    assert dh.init_and_get_subscription_offset("offp", topic, sub_id, ["0"]).offsets["0"].session_id == 2

    dh.delete_subscription("offp", topic, sub_id)
    sub2 = dh.create_subscription("offp", topic, "fresh").sub_id
    got = dh.get_subscription_offset("offp", topic, sub2).offsets
    assert all(o.sequence == -1 for o in got.values())
    srv.restart()
    with pytest.raises(DatahubException) as e:
        srv.client("json").get_subscription_offset("offp", topic, sub_id)
    assert e.value.error_code == "NoSuchSubscription"
