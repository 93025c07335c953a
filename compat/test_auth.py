"""Authentication: DATAHUB HMAC-SHA1 signatures, Date checks, unsigned and tampered requests
(protocol doc §2, §3)."""

import datetime

import pytest
from datahub.exceptions import AuthorizationFailedException, ResourceNotFoundException

import sign
from util import ACCESS_ID, ACCESS_KEY, blob_records, create_blob_topic, make_client, read_all, unique_name


def test_signer_matches_protocol_examples():
    """compat/sign.py reproduces the worked examples of protocol doc §2.4 (checks the test tool)."""
    date = "Thu, 01 Jan 2026 00:00:00 GMT"
    json_headers = {"Content-Type": "application/json", "Date": date, "x-datahub-client-version": "1.1"}
    assert sign.authorization("testAccessId", "testAccessKey", "GET", "/projects", json_headers) == \
        "DATAHUB testAccessId:yz17GBf+pPn2Qd83vmivuJOlx1I="
    assert sign.authorization("testAccessId", "testAccessKey", "GET",
                              "/projects/test_project/topics/test_topic/connectors?mode=id", json_headers) == \
        "DATAHUB testAccessId:/pgl+8RSagbyeofWt+dWszYSixw="
    pb_headers = {"Content-Type": "application/x-protobuf", "Date": date, "x-datahub-client-version": "1.1",
                  "x-datahub-request-action": "sub", "x-datahub-security-token": "STS.testToken"}
    assert sign.authorization("testAccessId", "testAccessKey", "POST",
                              "/projects/test_project/topics/test_topic/shards/0", pb_headers) == \
        "DATAHUB testAccessId:QFBV6KgUhqwmDdN8DCvtqUk5zgo="


def test_health_needs_no_signature(raw):
    resp = raw.get("/health", sign=False)
    assert resp.status == 200


def test_correctly_signed_raw_request(raw, project):
    resp = raw.get("/projects")
    assert resp.status == 200, resp
    assert project in resp.json()["ProjectNames"]
    assert resp.headers.get("x-datahub-request-id"), "every response carries x-datahub-request-id"


def test_error_responses_carry_request_id(raw):
    resp = raw.get("/projects/%s" % unique_name("nope"))
    assert resp.status == 404
    assert resp.error_code == "NoSuchProject"
    request_id = resp.headers.get("x-datahub-request-id")
    assert request_id
    assert resp.json().get("RequestId", request_id) == request_id


@pytest.mark.parametrize("who", ["wrong-key", "unknown-id", "empty-credentials"])
def test_client_with_bad_credentials(endpoint, dh, who):
    access_id, access_key = {
        "wrong-key": (ACCESS_ID, ACCESS_KEY + "x"),
        "unknown-id": ("someoneElse", ACCESS_KEY),
        "empty-credentials": ("", ""),
    }[who]
    bad = make_client(endpoint, "json", access_id=access_id, access_key=access_key)
    with pytest.raises(AuthorizationFailedException) as e:
        bad.list_project()
    assert e.value.error_code == "Unauthorized"
    assert e.value.status_code == 401
    name = unique_name("p")
    with pytest.raises(AuthorizationFailedException):
        bad.create_project(name, "must not be created")
    with pytest.raises(ResourceNotFoundException):
        dh.get_project(name)


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_record_calls_with_wrong_key(endpoint, dh, project, protocol):
    topic = create_blob_topic(dh, project)
    bad = make_client(endpoint, protocol, access_key="not-the-key")
    with pytest.raises(AuthorizationFailedException):
        if protocol == "json":
            recs = blob_records([b"x"])
            recs[0].shard_id = "0"
            bad.put_records(project, topic, recs)
        else:
            bad.put_records_by_shard(project, topic, "0", blob_records([b"x"]))
    with pytest.raises(AuthorizationFailedException):
        bad.get_blob_records(project, topic, "0", "20000000000000000000000000000000", 10)
    assert read_all(dh, project, topic, "0") == []


def _ago(**kw):
    return sign.rfc822(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**kw))


def _ahead(**kw):
    return sign.rfc822(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(**kw))


UNAUTHORIZED_CASES = {
    "unsigned": dict(sign=False),
    "not-datahub-scheme": dict(authorization_value="Basic dXNlcjpwYXNz"),
    "no-colon": dict(authorization_value="DATAHUB %s" % ACCESS_ID),
    "empty-signature": dict(authorization_value="DATAHUB %s:" % ACCESS_ID),
    "garbage-signature": dict(authorization_value="DATAHUB %s:AAAAAAAAAAAAAAAAAAAAAAAAAAA=" % ACCESS_ID),
    "wrong-key": dict(access_key="wrong"),
    "unknown-id": dict(access_id="nobody"),
    "signed-other-path": dict(sign_path="/projects/other"),
    "expired-date": dict(date=_ago(days=2)),
    "future-date": dict(date=_ahead(days=2)),
}


@pytest.mark.parametrize("case", sorted(UNAUTHORIZED_CASES))
def test_raw_unauthorized(raw, case):
    kw = dict(UNAUTHORIZED_CASES[case])
    # dates are computed when the module loads; refresh relative ones
    if case == "expired-date":
        kw["date"] = _ago(days=2)
    elif case == "future-date":
        kw["date"] = _ahead(days=2)
    resp = raw.get("/projects", **kw)
    assert resp.status == 401, resp
    assert resp.error_code == "Unauthorized"


@pytest.mark.parametrize("date", ["yesterday", "", "2026-01-01T00:00:00Z"])
def test_raw_bad_date_header(raw, date):
    resp = raw.get("/projects", date=date)
    assert resp.status in (400, 401), resp
    assert resp.error_code in ("Unauthorized", "InvalidParameter")


def test_raw_missing_date_header(raw):
    resp = raw.get("/projects", drop_headers=("Date",))
    assert resp.status in (400, 401), resp
    assert resp.error_code in ("Unauthorized", "InvalidParameter")


def test_tampering_after_signing_is_detected(raw, dh, project):
    path = "/projects/%s" % project
    date = sign.rfc822()
    signed_headers = {"Content-Type": "application/json", "Date": date, "x-datahub-client-version": "1.1"}
    get_auth = sign.authorization(ACCESS_ID, ACCESS_KEY, "GET", path, signed_headers)
    # the same signature is fine for the request it was made for...
    assert raw.get(path, date=date, authorization_value=get_auth).status == 200
    # ...but not for another method (a DELETE must not ride on a GET's signature)
    resp = raw.delete(path, date=date, authorization_value=get_auth)
    assert resp.status == 401 and resp.error_code == "Unauthorized"
    assert dh.get_project(project).project_name == project
    # nor with another Content-Type, or another signed x-datahub header
    resp = raw.get(path, date=date, authorization_value=get_auth, content_type="text/plain")
    assert resp.status == 401
    resp = raw.get(path, date=date, authorization_value=get_auth, headers={"x-datahub-client-version": "9.9"})
    assert resp.status == 401
    resp = raw.get(path, date=date, authorization_value=get_auth, headers={"x-datahub-request-action": "sub"})
    assert resp.status == 401


def test_signed_query_string(raw, dh, project):
    """The canonical resource includes the sorted query; unknown query keys are accepted (§1.2, §2.2)."""
    resp = raw.get("/projects?filter=abc&a=1")
    assert resp.status == 200, resp
    resp = raw.get("/projects?filter=abc", sign_path="/projects")
    assert resp.status == 401, resp


@pytest.mark.parametrize("skew_s", [-60, 60])
def test_small_clock_skew_is_tolerated(raw, skew_s):
    """Client clocks are never exactly in sync: a Date a minute off is still accepted."""
    date = sign.rfc822(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=skew_s))
    resp = raw.get("/projects", date=date)
    assert resp.status == 200, resp


def test_security_token_header_is_signed(raw):
    """x-datahub-* headers are part of the signature, the STS token header included (§2.2)."""
    date = sign.rfc822()
    headers = {"Content-Type": "application/json", "Date": date, "x-datahub-client-version": "1.1"}
    auth_without = sign.authorization(ACCESS_ID, ACCESS_KEY, "GET", "/projects", headers)
    resp = raw.get("/projects", date=date, authorization_value=auth_without,
                   headers={"x-datahub-security-token": "STS.injected"})
    assert resp.status == 401, resp
