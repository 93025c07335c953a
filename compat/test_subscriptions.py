"""Subscriptions (protocol doc §4.10): create, get, list with paging and search, update comment
and state, delete; a deleted topic takes its subscriptions with it."""

import pytest
from datahub.exceptions import DatahubException, ResourceNotFoundException, SubscriptionOfflineException
from datahub.models import SubscriptionState

from consumer_util import keyed_topic
from util import create_blob_topic


def sub_path(project, topic, sub_id=""):
    path = "/projects/%s/topics/%s/subscriptions" % (project, topic)
    return path + ("/" + sub_id if sub_id else "")


def test_create_get_update_delete(dh, raw, project):
    topic = create_blob_topic(dh, project)
    sub_id = dh.create_subscription(project, topic, "first comment").sub_id
    assert isinstance(sub_id, str) and sub_id.isdigit()

    # pydatahub's get_subscription is broken client-side (§6.7): read it raw.
    resp = raw.get(sub_path(project, topic, sub_id))
    assert resp.status == 200, resp
    got = resp.json()
    assert got["SubId"] == sub_id and got["TopicName"] == topic
    assert got["Comment"] == "first comment" and got["State"] == 1
    assert got["IsOwner"] is True and got["Owner"] is True and got["Type"] == 0
    assert got["CreateTime"] > 1_600_000_000 and got["LastModifyTime"] >= got["CreateTime"]
    with pytest.raises(TypeError):
        dh.get_subscription(project, topic, sub_id)

    dh.update_subscription(project, topic, sub_id, "second comment")
    dh.update_subscription_state(project, topic, sub_id, SubscriptionState.INACTIVE)
    got = raw.get(sub_path(project, topic, sub_id)).json()
    assert got["Comment"] == "second comment" and got["State"] == 0
    # An offline subscription refuses offset sessions and group joins.
    with pytest.raises(SubscriptionOfflineException):
        dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"])
    dh.update_subscription_state(project, topic, sub_id, SubscriptionState.ACTIVE)
    dh.init_and_get_subscription_offset(project, topic, sub_id, ["0"])

    dh.delete_subscription(project, topic, sub_id)
    resp = raw.get(sub_path(project, topic, sub_id))
    assert resp.status == 404 and resp.error_code == "NoSuchSubscription"
    with pytest.raises(DatahubException) as e:
        dh.get_subscription_offset(project, topic, sub_id)
    assert e.value.error_code == "NoSuchSubscription"


def test_list_paging_and_search(dh, project):
    topic = create_blob_topic(dh, project)
    ids = [dh.create_subscription(project, topic, "group %s" % name).sub_id
           for name in ["alpha", "beta", "alphabet", "gamma", "delta"]]
    page = dh.list_subscription(project, topic, "", 1, 10)
    assert page.total_count == 5
    assert [s.sub_id for s in page.subscriptions] == ids
    assert all(s.state == SubscriptionState.ACTIVE and s.topic_name == topic for s in page.subscriptions)

    seen = []
    for index in (1, 2, 3):
        p = dh.list_subscription(project, topic, "", index, 2)
        assert p.total_count == 5
        seen += [s.sub_id for s in p.subscriptions]
    assert seen == ids
    assert dh.list_subscription(project, topic, "", 4, 2).subscriptions == []

    found = dh.list_subscription(project, topic, "ALPHA", 1, 10)
    assert found.total_count == 2
    assert sorted(s.comment for s in found.subscriptions) == ["group alpha", "group alphabet"]
    by_id = dh.list_subscription(project, topic, ids[3], 1, 10)
    assert [s.sub_id for s in by_id.subscriptions] == [ids[3]]


def test_subscription_belongs_to_its_topic(dh, raw, project):
    topic, sub_id = keyed_topic(dh, project, shards=1)
    other = create_blob_topic(dh, project)
    resp = raw.get(sub_path(project, other, sub_id))
    assert resp.status == 404 and resp.error_code == "NoSuchSubscription"
    with pytest.raises(ResourceNotFoundException):
        dh.create_subscription(project, "no_such_topic", "x")


def test_deleting_topic_deletes_subscriptions(dh, raw, project):
    topic, sub_id = keyed_topic(dh, project, shards=2)
    dh.init_and_get_subscription_offset(project, topic, sub_id, ["0", "1"])
    dh.delete_topic(project, topic)
    # a new topic under the same name starts without subscriptions
    dh.create_blob_topic(project, topic, 1, 1, "again")
    assert dh.list_subscription(project, topic, "", 1, 10).total_count == 0
    resp = raw.get(sub_path(project, topic, sub_id))
    assert resp.error_code == "NoSuchSubscription"
