"""Accounts and access control (issue 15): access keys made through the key management API
(docs/accounts.md), policies enforced on pydatahub's calls in every protocol, NoPermission as
pydatahub's NoPermissionException and as raw HTTP, disabled/expired keys, rotation, and secrets
that never show up again (responses, the server's log, the audit log)."""

import time

import pytest
from datahub.exceptions import AuthorizationFailedException, NoPermissionException
from datahub.models import ConnectorState

from util import blob_records, create_blob_topic, make_client, read_all, unique_name


def create_key(raw, allow, name=None, **extra):
    body = {"Name": name or unique_name("k"), "Allow": allow}
    body.update(extra)
    resp = raw.post("/accounts/keys", body)
    assert resp.status == 200, resp
    data = resp.json()
    assert set(data) == {"AccessId", "AccessKey"}, data
    return body["Name"], data["AccessId"], data["AccessKey"]


def shard0(blobs):
    records = blob_records(blobs)
    for r in records:
        r.shard_id = "0"
    return records


def key_action(raw, name, action, **extra):
    body = {"Action": action}
    body.update(extra)
    resp = raw.post("/accounts/keys/" + name, body)
    assert resp.status == 200, resp
    return resp.json() if resp.body else None


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_a_key_limited_to_reading_one_topic(server, dh, raw, project, protocol):
    readable = create_blob_topic(dh, project)
    other = create_blob_topic(dh, project)
    for topic in (readable, other):
        dh.put_records(project, topic, shard0([b"x", b"y"]))
    _, access_id, secret = create_key(raw, ["read:%s/%s" % (project, readable)])
    reader = make_client(server.endpoint, protocol, access_id=access_id, access_key=secret)

    assert [r.blob_data for r in read_all(reader, project, readable, "0")] == [b"x", b"y"]
    with pytest.raises(NoPermissionException) as refused:
        if protocol == "batch":
            reader.put_records_by_shard(project, readable, "0", shard0([b"z"]))
        else:
            reader.put_records(project, readable, shard0([b"z"]))
    assert "write:%s/%s" % (project, readable) in str(refused.value)
    with pytest.raises(NoPermissionException) as refused:
        read_all(reader, project, other, "0")
    assert "%s/%s" % (project, other) in str(refused.value)
    with pytest.raises(NoPermissionException) as refused:
        reader.update_connector_state(project, readable, "sink_odps", ConnectorState.CONNECTOR_STOPPED)
    assert "connectors:%s/%s" % (project, readable) in str(refused.value)
    with pytest.raises(NoPermissionException):
        reader.delete_topic(project, readable)
    # nothing was written by the refused put
    assert len(read_all(dh, project, readable, "0")) == 2


def test_no_permission_as_raw_http(server, raw, project, dh):
    """The Go and Java SDKs map 403 + ErrorCode NoPermission to their NoPermission errors and do
    not retry them (docs/sdk-wire.md "Accounts"): this is what they receive."""
    topic = create_blob_topic(dh, project)
    _, access_id, secret = create_key(raw, ["read:%s/%s" % (project, topic)])
    resp = raw.post("/projects/%s/topics/%s/shards" % (project, topic),
                    {"Action": "pub", "Records": [{"Data": "eA==", "ShardId": "0"}]},
                    access_id=access_id, access_key=secret)
    assert resp.status == 403, resp
    assert resp.error_code == "NoPermission"
    body = resp.json()
    assert "write:%s/%s" % (project, topic) in body["ErrorMessage"]
    assert body["RequestId"] == resp.headers["x-datahub-request-id"]


def test_disabled_and_expired_keys_are_refused_at_once(server, raw):
    name, access_id, secret = create_key(raw, ["read:*/*"])
    client = make_client(server.endpoint, "json", access_id=access_id, access_key=secret)
    client.list_project()
    key_action(raw, name, "disable")
    with pytest.raises(AuthorizationFailedException):
        client.list_project()
    key_action(raw, name, "enable")
    client.list_project()

    _, access_id, secret = create_key(raw, ["read:*/*"], ExpiresInSecs=1)
    short = make_client(server.endpoint, "json", access_id=access_id, access_key=secret)
    short.list_project()
    time.sleep(1.2)
    with pytest.raises(AuthorizationFailedException):
        short.list_project()


def test_a_rotated_keys_old_secret_works_only_during_the_change_over(server, raw):
    name, access_id, old_secret = create_key(raw, ["read:*/*"])
    new = key_action(raw, name, "rotate")
    assert new["AccessId"] == access_id and new["AccessKey"] != old_secret
    old_client = make_client(server.endpoint, "json", access_id=access_id, access_key=old_secret)
    new_client = make_client(server.endpoint, "json", access_id=access_id, access_key=new["AccessKey"])
    old_client.list_project()
    new_client.list_project()
    key_action(raw, name, "retire")
    with pytest.raises(AuthorizationFailedException):
        old_client.list_project()
    new_client.list_project()


def test_secrets_never_appear_after_creation(server, raw, dh, project):
    name, access_id, secret = create_key(raw, ["admin:%s/*" % project])
    rotated = key_action(raw, name, "rotate")["AccessKey"]
    admin = make_client(server.endpoint, "json", access_id=access_id, access_key=rotated)
    topic = unique_name("t")
    admin.create_blob_topic(project, topic, 1, 1, "made by a key")
    admin.delete_topic(project, topic)
    listed = raw.get("/accounts/keys")
    assert listed.status == 200, listed
    mine = [k for k in listed.json()["Keys"] if k["Name"] == name]
    assert mine and mine[0]["AccessId"] == access_id and "AccessKey" not in mine[0]
    # Every page, oldest first (a shared server, e.g. the cluster, holds other tests' entries).
    entries, pages, after = [], [], 0
    while True:
        audit = raw.get("/accounts/audit?limit=1000&after=%d" % after)
        assert audit.status == 200, audit
        page = audit.json()["Entries"]
        pages.append(audit)
        entries += page
        if len(page) < 1000:
            break
        after = page[-1]["Seq"]
    assert any(e["Who"] == name and e["What"] == "DELETE /projects/%s/topics/%s" % (project, topic)
               for e in entries), entries[-20:]
    log = b""
    for path in server.log_paths():
        with open(path, "rb") as f:
            log += f.read()
    assert log, "no server log to check"
    for s in (secret, rotated):
        assert s.encode() not in listed.body
        assert all(s.encode() not in a.body for a in pages)
        assert s.encode() not in log


def test_console_sign_in_takes_the_root_or_an_admin_key_only(server, raw):
    """The console acts through the service layer with full rights, so only the root pair and
    stored keys holding admin:*/* may sign in; a narrower key, or a disabled admin, is refused."""
    import requests

    def sign_in(access_id, secret):
        r = requests.post(server.endpoint + "/console/login", data={"access_id": access_id, "access_key": secret},
                          allow_redirects=False, timeout=10)
        return r.status_code

    admin, admin_id, admin_secret = create_key(raw, ["admin:*/*"])
    _, reader_id, reader_secret = create_key(raw, ["read:*/*", "write:*/*", "topics:*/*"])
    assert sign_in(admin_id, admin_secret) == 303
    assert sign_in(reader_id, reader_secret) == 401
    assert sign_in(admin_id, reader_secret) == 401

    # a change made in the console is audited under the signed-in key's name
    import re
    project = unique_name("p")
    assert raw.post("/projects/" + project, {"Comment": "console audit"}).status in (200, 201)
    s = requests.Session()
    s.post(server.endpoint + "/console/login", data={"access_id": admin_id, "access_key": admin_secret},
           allow_redirects=False, timeout=10)
    page = s.get(server.endpoint + "/console/projects/" + project, timeout=10)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    topic = unique_name("t")
    made = s.post(server.endpoint + "/console/projects/%s/topics" % project, allow_redirects=False, timeout=10,
                  data={"name": topic, "shard_count": "1", "lifecycle_days": "1", "record_type": "BLOB",
                        "csrf": csrf})
    assert made.status_code == 303, made.text
    entries = raw.get("/accounts/audit?after=0&limit=1000").json()["Entries"]
    mine = [e for e in entries if e["Resource"] == "%s/%s" % (project, topic)]
    assert [(e["Who"], e["What"]) for e in mine] == [(admin, "console: create topic")], mine

    key_action(raw, admin, "disable")
    assert sign_in(admin_id, admin_secret) == 401
