"""A stand-in for Function Compute 3.0's InvokeFunction, for SINK_FC's tests.

    rx = FcReceiver()                  # listens on 127.0.0.1:rx.port, keys rx.access_id / rx.access_key
    rx.records()                       # every record of every accepted invocation, in arrival order
    rx.fail_with(503)                  # every call answers HTTP 503 until rx.fail_with(None)
    rx.function_errors(2)              # the next 2 calls answer 200 with X-Fc-Error-Type
    rx.close()

Every request's signature is checked with the vendor's own code: the `ACS3-HMAC-SHA256`
Authorization that `alibabacloud_tea_openapi` (what the official FC 3.0 SDK,
`alibabacloud_fc20230330`, signs with) computes from the received method, path, query, signed
headers and body hash, for the receiver's keys. A request that does not verify gets HTTP 403 and
is kept in `rx.signature_failures`; tests assert that list stays empty.

A record whose `fields.note` is BAD_NOTE makes the function fail (HTTP 200 with
`X-Fc-Error-Type: UnhandledInvocationError`), every time: SINK_FC must retry, then bisect the
batch down to it and discard it.
"""

import calendar
import hashlib
import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from alibabacloud_tea_openapi.utils import Utils

ALGORITHM = "ACS3-HMAC-SHA256"
PATH_PREFIX = "/2023-03-30/functions/"
PATH_SUFFIX = "/invocations"
BAD_NOTE = "refused-by-the-function"
MAX_CLOCK_SKEW_S = 15 * 60


class FcReceiver:
    def __init__(self, access_id="fcTestId", access_key="fcTestKey0123456789"):
        self.access_id, self.access_key = access_id, access_key
        self._lock = threading.Lock()
        self._records = []  # (arrival, function name, record)
        self.invocations = []  # one dict per request: function, count, status, error type
        self.signature_failures = []
        self._status = None
        self._function_errors = 0
        self._arrival = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host, self.port = "127.0.0.1", self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.port)

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def fail_with(self, status):
        """Every call answers `status` (e.g. 503, 429) until called with None."""
        with self._lock:
            self._status = status

    def function_errors(self, n):
        """The next `n` calls answer 200 with X-Fc-Error-Type (the function failed)."""
        with self._lock:
            self._function_errors = n

    def records(self):
        """[(arrival, function name, record)] of every accepted invocation, in arrival order."""
        with self._lock:
            return list(self._records)

    # -- the handler --------------------------------------------------------------------------

    def _verify(self, req, path, body):
        """None when the request is signed by our keys, else why not."""
        auth = req.headers.get("Authorization", "")
        if not auth.startswith(ALGORITHM + " "):
            return "no %s Authorization: %r" % (ALGORITHM, auth[:80])
        parts = dict(p.split("=", 1) for p in auth[len(ALGORITHM) + 1:].split(",") if "=" in p)
        if parts.get("Credential") != self.access_id:
            return "Credential %r is not %r" % (parts.get("Credential"), self.access_id)
        signed = parts.get("SignedHeaders", "").split(";")
        for needed in ("host", "x-acs-date", "x-acs-content-sha256", "x-acs-signature-nonce"):
            if needed not in signed:
                return "%s is not signed (SignedHeaders=%s)" % (needed, parts.get("SignedHeaders"))
        headers = {}
        for name in signed:
            value = req.headers.get(name)
            if value is None:
                return "signed header %s is missing" % name
            headers[name] = value
        body_hash = hashlib.sha256(body).hexdigest()
        if headers["x-acs-content-sha256"] != body_hash:
            return "x-acs-content-sha256 does not match the body"
        date = calendar.timegm(time.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ"))
        if abs(date - time.time()) > MAX_CLOCK_SKEW_S:
            return "x-acs-date %s is off by more than %ds" % (headers["x-acs-date"], MAX_CLOCK_SKEW_S)
        split = urlsplit(path)
        request = types.SimpleNamespace(method=req.command, pathname=split.path,
                                        query=dict(parse_qsl(split.query)), headers=headers)
        want = Utils.get_authorization(request, ALGORITHM, body_hash, self.access_id, self.access_key)
        if want != auth:
            return "signature mismatch: got %r, the SDK computes %r" % (auth, want)
        return None

    def _handle(self, req):
        length = int(req.headers.get("Content-Length", "0"))
        body = req.rfile.read(length) if length else b""
        path = req.path
        why = self._verify(req, path, body)
        if why is not None:
            with self._lock:
                self.signature_failures.append(why)
            return self._answer(req, 403, {"Code": "SignatureNotMatch", "Message": why})
        route = urlsplit(path).path
        if not (route.startswith(PATH_PREFIX) and route.endswith(PATH_SUFFIX)):
            return self._answer(req, 404, {"Code": "NotFound", "Message": path})
        function = unquote(route[len(PATH_PREFIX):-len(PATH_SUFFIX)])
        try:
            records = json.loads(body)["records"] if body else []
        except ValueError:
            records = None
        with self._lock:
            call = {"function": function, "count": len(records or []), "status": 200, "error": None}
            self.invocations.append(call)
            if self._status is not None:
                call["status"] = self._status
                return self._answer(req, self._status, {"Code": "Injected", "Message": "injected failure"})
            if records is None or self._function_errors > 0 or \
                    any((r.get("fields") or {}).get("note") == BAD_NOTE for r in records):
                if self._function_errors > 0:
                    self._function_errors -= 1
                call["error"] = "UnhandledInvocationError"
                return self._answer(req, 200, {"errorMessage": "the function refused a record",
                                               "errorType": "Error"},
                                    {"X-Fc-Error-Type": "UnhandledInvocationError"})
            for r in records:
                self._arrival += 1
                self._records.append((self._arrival, function, r))
        return self._answer(req, 200, {"ok": len(records)})

    @staticmethod
    def _answer(req, status, body, headers=None):
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)
