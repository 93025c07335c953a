"""pydatahub over HTTPS (issue 8 item 9): `sluice serve --tls-cert --tls-key` with a CA and a server
certificate made by `openssl` in the test (conftest `pki`, `https_server`).

The official SDKs default to https endpoints. pydatahub 2.29.0 never verifies the server
(datahub/rest.py:298 sends with `verify=False`); these tests make it verify against the test CA
(conftest `VerifyingAdapter`), so a client that trusts the CA succeeds and one that does not fails.
"""

import pytest
import requests

from conftest import verify_with
from util import (BLOBS, all_types_schema, assert_rows_equal, blob_records, create_blob_topic, create_tuple_topic,
                  expected_row, make_client, put, read_all, rows_for, tuple_records, unique_name, values)


@pytest.fixture
def https_project(https_server):
    dh = https_server.client("json", "lz4")
    name = unique_name("p")
    dh.create_project(name, "compat https project")
    return name


@pytest.mark.parametrize("protocol", ["json", "pb", "batch"])
def test_records_over_https_with_a_client_that_trusts_the_ca(https_server, https_project, protocol):
    """Put and get tuple and blob records in each protocol over HTTPS, verifying the certificate."""
    client = https_server.client(protocol, "lz4")
    schema = all_types_schema()
    topic = create_tuple_topic(client, https_project, schema)
    rows = rows_for(protocol)
    put(client, protocol, https_project, topic, tuple_records(schema, rows))
    got = read_all(client, https_project, topic, "0", schema, limit=2)
    assert_rows_equal([values(r) for r in got], [expected_row(r, protocol) for r in rows])

    blobs = create_blob_topic(client, https_project)
    put(client, protocol, https_project, blobs, blob_records(BLOBS))
    assert [r.blob_data for r in read_all(client, https_project, blobs, "0")] == BLOBS


def test_a_client_that_does_not_trust_the_ca_fails(https_server, pki):
    """The same calls fail with a certificate error when the client verifies against the system's
    roots (which do not hold the test CA); requests' own default does the same."""
    untrusting = verify_with(make_client(https_server.endpoint, "json"), True)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.list_project()
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(https_server.endpoint + "/health", timeout=10)
    # The same with the CA: the certificate names both localhost and 127.0.0.1.
    for host in ("127.0.0.1", "localhost"):
        url = "https://%s:%d/health" % (host, https_server.port)
        assert requests.get(url, timeout=10, verify=pki.ca).status_code == 200
    trusting = verify_with(make_client(https_server.endpoint, "json"), pki.ca)
    assert isinstance(trusting.list_project().project_names, list)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_stock_pydatahub_does_not_verify_and_works_over_https(https_server, https_project):
    """pydatahub as shipped (verify=False, datahub/rest.py:298) reaches the HTTPS server too."""
    stock = make_client(https_server.endpoint, "pb")
    assert https_project in stock.list_project().project_names


def test_plain_http_to_the_https_port_gets_no_answer(https_server):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://127.0.0.1:%d/health" % https_server.port, timeout=10)


def test_signed_raw_requests_over_https(https_server, https_project):
    """The Go SDK's default endpoint is https (a raw signed GET /projects/<name>, verified)."""
    resp = https_server.raw().request("GET", "/projects/" + https_project)
    assert resp.status == 200, resp
    assert "Comment" in resp.json()
