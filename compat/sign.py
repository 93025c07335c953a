"""A small, independent DataHub request signer and raw HTTP client (protocol doc §2).

The conformance tests use it to send requests that pydatahub would refuse to build (invalid names,
garbage bodies, bad signatures, stale dates) while still signing them correctly, and to look at
raw status codes and error bodies. It deliberately does not reuse pydatahub's signer, so that the
tests also catch a server that only agrees with pydatahub by accident.
"""

import base64
import datetime
import hashlib
import hmac
import json
import zlib
from urllib.parse import parse_qsl, unquote, urlsplit

import lz4.block
import requests
import zstandard

CLIENT_VERSION = "1.1"
RFC822 = "%a, %d %b %Y %H:%M:%S GMT"


def rfc822(when=None):
    """`Date` header value for `when` (a UTC datetime; default now)."""
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    return when.strftime(RFC822)


def canonical_resource(path_and_query):
    """Percent-decoded path, plus `?` and the sorted query (`k=v`, or `k` for blank values)."""
    parts = urlsplit(path_and_query)
    resource = unquote(parts.path)
    if parts.query:
        pairs = sorted(parse_qsl(unquote(parts.query), keep_blank_values=True), key=lambda kv: kv[0])
        resource += "?" + "&".join(k + "=" + v if v else k for k, v in pairs)
    return resource


def canonical_string(method, path_and_query, headers):
    """The string that is HMAC-signed (protocol doc §2.2). `headers` is a dict of header values."""
    lower = {k.lower(): v for k, v in headers.items()}
    lines = [method.upper(), lower.get("content-type", ""), lower.get("date", "")]
    for name in sorted(k for k in lower if k.startswith("x-datahub-")):
        lines.append("%s:%s" % (name, lower[name]))
    lines.append(canonical_resource(path_and_query))
    return "\n".join(lines)


def signature(access_key, canonical):
    digest = hmac.new(access_key.encode("latin-1"), canonical.encode("latin-1"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization(access_id, access_key, method, path_and_query, headers):
    """`Authorization` header value: `DATAHUB <id>:<base64 hmac-sha1>`."""
    return "DATAHUB %s:%s" % (access_id, signature(access_key, canonical_string(method, path_and_query, headers)))


def decode_body(resp):
    """Response body after DataHub's own Content-Encoding (lz4 raw block / zlib, as pydatahub does;
    zstd, as the Go SDK does)."""
    encoding = resp.headers.get("Content-Encoding", "")
    body = resp.content
    if encoding == "lz4":
        raw_size = int(resp.headers.get("x-datahub-content-raw-size", "0"))
        return lz4.block.decompress(body, uncompressed_size=raw_size)
    if encoding == "zlib":
        return zlib.decompress(body)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


class RawResponse:
    def __init__(self, resp):
        self.status = resp.status_code
        self.headers = resp.headers
        self.body = decode_body(resp)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def error_code(self):
        """The DataHub `ErrorCode` of an error body (AssertionError if there is none)."""
        try:
            data = self.json()
        except ValueError:
            raise AssertionError("error response is not JSON (status %d): %r" % (self.status, self.body[:300]))
        assert isinstance(data, dict) and "ErrorCode" in data, \
            "error response has no ErrorCode (status %d): %r" % (self.status, self.body[:300])
        return data["ErrorCode"]

    def __repr__(self):
        return "<RawResponse %d %r>" % (self.status, self.body[:300])


class RawClient:
    """Signs and sends arbitrary requests to a DataHub endpoint with `requests`."""

    def __init__(self, endpoint, access_id, access_key, timeout=30):
        self.endpoint = endpoint.rstrip("/")
        self.access_id = access_id
        self.access_key = access_key
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, method, path, body=b"", headers=None, content_type="application/json", date=None,
                sign=True, access_id=None, access_key=None, authorization_value=None, sign_path=None,
                drop_headers=()):
        """Send one request and return a RawResponse.

        body: bytes, str, or a JSON-serializable object (dict/list). headers: extra headers, which
        are signed when their name starts with `x-datahub-`. date: a `Date` value (default now).
        sign=False sends no Authorization; authorization_value overrides it verbatim; sign_path
        signs a different path than the one requested; drop_headers removes headers after signing.
        """
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = {
            "x-datahub-client-version": CLIENT_VERSION,
            "Date": date if date is not None else rfc822(),
            "Accept-Encoding": "",
            "User-Agent": "sluice-compat-raw",
        }
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if headers:
            hdrs.update({k: str(v) for k, v in headers.items()})
        if authorization_value is not None:
            hdrs["Authorization"] = authorization_value
        elif sign:
            hdrs["Authorization"] = authorization(access_id or self.access_id,
                                                  access_key if access_key is not None else self.access_key,
                                                  method, sign_path or path, hdrs)
        for name in drop_headers:
            hdrs.pop(name, None)
        if method.upper() in ("POST", "PUT", "DELETE") or body:
            hdrs["Content-Length"] = str(len(body))
        req = requests.Request(method.upper(), self.endpoint + path, data=body or None, headers=hdrs)
        prepared = self.session.prepare_request(req)
        # requests adds its own defaults; keep exactly what we signed.
        for name in drop_headers:
            prepared.headers.pop(name, None)
        resp = self.session.send(prepared, timeout=self.timeout)
        return RawResponse(resp)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=b"", **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)
