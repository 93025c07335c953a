"""A Tablestore (OTS) test server for SINK_OTS, built on the official `tablestore` package.

    srv = OtsServer()                          # 127.0.0.1:srv.port, instance srv.instance
    srv.create_table("t", [("id", "INTEGER")]) # primary key columns: INTEGER | STRING | BINARY | BOOLEAN
    srv.rows("t")                              # {pk tuple: {"columns": {...}, "arrival": n, "op": "PUT"}}
    srv.fail_with(503, "OTSServerBusy")        # every request fails so until srv.fail_with(None)
    srv.row_errors(2, "OTSServerBusy")         # the next 2 rows written get that per-row error
    srv.close()

It answers `POST /DescribeTable` and `POST /BatchWriteRow` (API 2015-12-31) the way the
service does, using the package's own code for everything on the wire:
- the request signature (`x-ots-signature`) is recomputed with the package's `SignV2` from the
  received `x-ots-*` headers and checked, with `x-ots-contentmd5` against the body; a request
  that does not verify gets 403 OTSAuthFailed and is kept in `srv.signature_failures`;
- bodies are parsed with the package's protobuf classes (`table_store_pb2`), and each row's
  `row_change` with its PlainBuffer decoder (`PlainBufferCodedInputStream.read_row`, which
  checks the CRC-8 checksums); responses are built with the same classes and signed with
  `SignV2.make_response_signature`;
- rows are kept in memory, PK -> columns: PUT replaces the row, UPDATE sets the given columns;
  every write gets a new `arrival` number. A row whose primary key does not match the table
  (names, order, types), or with a string value longer than `max_cell_bytes`, gets the per-row
  error OTSParameterInvalid, as the service does.

The control endpoint `POST /_control` (unsigned, JSON) does the same from outside the process:
{"fail": [503, "OTSServerBusy"] | null}, {"row_errors": [n, code]}, {"create_table": [name,
[[col, type], ...]]}, {"count": name} -> {"rows": n}. `python ots_server.py --port P --table
t:id:INTEGER` runs it standalone (bench/ots).
"""

import argparse
import base64
import datetime
import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tablestore.auth import RequestContext, SignV2
from tablestore.credentials import Credentials
from tablestore.plainbuffer.plain_buffer_coded_stream import PlainBufferCodedInputStream
from tablestore.plainbuffer.plain_buffer_stream import PlainBufferInputStream
import tablestore.protobuf.table_store_pb2 as pb2

PK_TYPES = {"INTEGER": pb2.INTEGER, "STRING": pb2.STRING, "BINARY": pb2.BINARY, "BOOLEAN": pb2.PK_BOOLEAN}


def _fits(kind, value):
    if kind == "INTEGER":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BINARY":
        return isinstance(value, (bytes, bytearray))
    return isinstance(value, bool)


def decode_row(row_change):
    """(primary key [(name, value)], attributes [(name, value, timestamp)]) by the package."""
    return PlainBufferCodedInputStream(PlainBufferInputStream(bytes(row_change))).read_row()


class OtsServer:
    def __init__(self, access_id="otsTestId", access_key="otsTestKey0123456789", instance="sluice",
                 port=0, max_cell_bytes=2 * 1024 * 1024):
        self.access_id, self.access_key, self.instance = access_id, access_key, instance
        self.max_cell_bytes = max_cell_bytes
        self.signer = SignV2("utf-8")
        self._lock = threading.Lock()
        self._tables = {}  # name -> {"key": [(col, type)], "rows": {pk tuple: row}}
        self._fail = None
        self._row_errors = [0, None]
        self._arrival = 0
        self.signature_failures = []
        self.requests = []  # (api, rows in the request, HTTP status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                server._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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

    # -- what tests call ----------------------------------------------------------------------

    def create_table(self, name, key):
        with self._lock:
            self._tables[name] = {"key": [(c, t.upper()) for c, t in key], "rows": {}}

    def rows(self, name):
        with self._lock:
            return {pk: dict(row, columns=dict(row["columns"])) for pk, row in self._tables[name]["rows"].items()}

    def fail_with(self, status, code="OTSServerBusy"):
        """Every request answers `status` with the Error `code` until called with None."""
        with self._lock:
            self._fail = None if status is None else (status, code)

    def row_errors(self, n, code):
        """The next `n` rows written are refused with the per-row error `code`."""
        with self._lock:
            self._row_errors = [n, code]

    # -- the handler --------------------------------------------------------------------------

    def _verify(self, api, headers, body):
        """None when the request is signed by our key, else why not."""
        ots = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ots-")}
        for needed in ("x-ots-date", "x-ots-apiversion", "x-ots-accesskeyid", "x-ots-instancename",
                       "x-ots-contentmd5", "x-ots-signature"):
            if needed not in ots:
                return "%s is missing" % needed
        if ots["x-ots-apiversion"] != "2015-12-31":
            return "x-ots-apiversion is %r" % ots["x-ots-apiversion"]
        if ots["x-ots-accesskeyid"] != self.access_id:
            return "x-ots-accesskeyid %r is not ours" % ots["x-ots-accesskeyid"]
        if ots["x-ots-instancename"] != self.instance:
            return "x-ots-instancename %r is not %r" % (ots["x-ots-instancename"], self.instance)
        if ots["x-ots-contentmd5"] != base64.b64encode(hashlib.md5(body).digest()).decode():
            return "x-ots-contentmd5 does not match the body"
        date = datetime.datetime.strptime(ots["x-ots-date"], "%Y-%m-%dT%H:%M:%S.%fZ")
        if abs((datetime.datetime.utcnow() - date).total_seconds()) > 15 * 60:
            return "x-ots-date %s is off by more than 15 minutes" % ots["x-ots-date"]
        got = ots.pop("x-ots-signature")
        context = RequestContext(Credentials(self.access_id, self.access_key))
        self.signer.make_request_signature_and_add_headers("/" + api, ots, context)
        if ots["x-ots-signature"] != got:
            return "signature mismatch: got %r, the package computes %r" % (got, ots["x-ots-signature"])
        return None

    def _handle(self, req):
        length = int(req.headers.get("Content-Length", "0"))
        body = req.rfile.read(length) if length else b""
        api = req.path.lstrip("/")
        if api == "_control":
            return self._control(req, json.loads(body or b"{}"))
        why = self._verify(api, req.headers, body)
        if why is not None:
            with self._lock:
                self.signature_failures.append(why)
            return self._error(req, api, 403, "OTSAuthFailed", why)
        with self._lock:
            fail = self._fail
        if fail is not None:
            self.requests.append((api, None, fail[0]))
            return self._error(req, api, fail[0], fail[1], "injected failure")
        if api == "DescribeTable":
            return self._describe(req, body)
        if api == "BatchWriteRow":
            return self._batch_write(req, body)
        return self._error(req, api, 400, "OTSUnsupportOperation", "no such API: %s" % api)

    def _describe(self, req, body):
        request = pb2.DescribeTableRequest()
        request.ParseFromString(body)
        with self._lock:
            table = self._tables.get(request.table_name)
        if table is None:
            return self._error(req, "DescribeTable", 404, "OTSObjectNotExist",
                               "Requested table does not exist.")
        resp = pb2.DescribeTableResponse()
        resp.table_meta.table_name = request.table_name
        for col, kind in table["key"]:
            pk = resp.table_meta.primary_key.add()
            pk.name, pk.type = col, PK_TYPES[kind]
        resp.reserved_throughput_details.capacity_unit.read = 0
        resp.reserved_throughput_details.capacity_unit.write = 0
        resp.reserved_throughput_details.last_increase_time = 0
        resp.table_options.time_to_live = -1
        resp.table_options.max_versions = 1
        self.requests.append(("DescribeTable", None, 200))
        return self._answer(req, "DescribeTable", 200, resp.SerializeToString())

    def _check_row(self, table, pk, attrs):
        """None, or the OTSParameterInvalid message the row gets."""
        key = table["key"]
        if [c for c, _ in key] != [n for n, _ in pk]:
            return "Validate PK name fail. Input: %s, Meta: %s." % ([n for n, _ in pk], [c for c, _ in key])
        for (col, kind), (_, value) in zip(key, pk):
            if not _fits(kind, value):
                return "Validate PK type fail. Input: %s, Meta: %s." % (type(value).__name__, kind)
        for name, value, _ in attrs:
            if isinstance(value, (str, bytes, bytearray)):
                size = len(value.encode() if isinstance(value, str) else value)
                if size > self.max_cell_bytes:
                    return "The length of attribute column: '%s' exceeds the MaxLength:%d with CurrentLength:%d." % (
                        name, self.max_cell_bytes, size)
        return None

    def _batch_write(self, req, body):
        request = pb2.BatchWriteRowRequest()
        request.ParseFromString(body)
        resp = pb2.BatchWriteRowResponse()
        count = 0
        with self._lock:
            for t in request.tables:
                out = resp.tables.add()
                out.table_name = t.table_name
                table = self._tables.get(t.table_name)
                seen = set()
                for row in t.rows:
                    count += 1
                    result = out.rows.add()
                    result.consumed.capacity_unit.write = 1
                    if table is None:
                        result.is_ok = False
                        result.error.code, result.error.message = "OTSObjectNotExist", "Requested table does not exist."
                        continue
                    pk, attrs = decode_row(row.row_change)
                    key = tuple(bytes(v) if isinstance(v, bytearray) else v for _, v in pk)
                    if key in seen:
                        return self._error(req, "BatchWriteRow", 400, "OTSParameterInvalid",
                                           "The input parameter is invalid: duplicated primary key.")
                    seen.add(key)
                    if self._row_errors[0] > 0:
                        self._row_errors[0] -= 1
                        result.is_ok = False
                        result.error.code, result.error.message = self._row_errors[1], "injected row error"
                        continue
                    why = self._check_row(table, pk, attrs)
                    if why is not None:
                        result.is_ok = False
                        result.error.code, result.error.message = "OTSParameterInvalid", why
                        continue
                    cells = {n: (bytes(v) if isinstance(v, bytearray) else v) for n, v, _ in attrs}
                    self._arrival += 1
                    old = table["rows"].get(key)
                    if row.type == pb2.UPDATE and old is not None:
                        cells = dict(old["columns"], **cells)
                    op = "PUT" if row.type == pb2.PUT else "UPDATE"
                    table["rows"][key] = {"columns": cells, "arrival": self._arrival, "op": op}
                    result.is_ok = True
        self.requests.append(("BatchWriteRow", count, 200))
        return self._answer(req, "BatchWriteRow", 200, resp.SerializeToString())

    def _control(self, req, cmd):
        out = {}
        if "fail" in cmd:
            self.fail_with(*(cmd["fail"] or [None]))
        if "row_errors" in cmd:
            self.row_errors(*cmd["row_errors"])
        if "create_table" in cmd:
            self.create_table(cmd["create_table"][0], cmd["create_table"][1])
        if "count" in cmd:
            with self._lock:
                out["rows"] = len(self._tables[cmd["count"]]["rows"])
        data = json.dumps(out).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _error(self, req, api, status, code, message):
        err = pb2.Error()
        err.code, err.message = code, message
        return self._answer(req, api, status, err.SerializeToString())

    def _answer(self, req, api, status, body):
        headers = {
            "x-ots-contentmd5": base64.b64encode(hashlib.md5(body).digest()).decode(),
            "x-ots-requestid": uuid.uuid4().hex,
            "x-ots-date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "x-ots-contenttype": "protocol buffer",
        }
        signature = self.signer.make_response_signature("/" + api, headers, self.access_key)
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Authorization", "OTS %s:%s" % (self.access_id, signature))
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--table", action="append", default=[], help="name:col:TYPE[:col:TYPE...]")
    args = ap.parse_args()
    srv = OtsServer(port=args.port)
    for spec in args.table:
        parts = spec.split(":")
        srv.create_table(parts[0], list(zip(parts[1::2], parts[2::2])))
    print("ots_server listening on %s instance %s id %s" % (srv.endpoint, srv.instance, srv.access_id), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
