"""A small fault-injecting HTTP front for an Elasticsearch / OpenSearch endpoint (osmem-server has
no TLS, basic auth or 429s of its own), for the SINK_ES tests.

    front = EsFront(upstream="http://127.0.0.1:9200", auth=("elastic", "pw"), tls=pki,
                    reject={"3": 2}, nodes=["http://127.0.0.1:P1", "http://127.0.0.1:P2"])
    front.url            # http(s)://127.0.0.1:PORT
    front.bulks          # the `_id`s of every `_bulk` request it received, in order
    front.paths          # every (method, path) it received
    front.close()

- `auth`: every request needs `Authorization: Basic user:password`, else 401 (security_exception).
- `reject`: `_id` → how many times a `_bulk` item with that id is answered 429
  es_rejected_execution_exception; such an item is NOT forwarded, so it arrives only when retried.
- `nodes`: the answer to `GET /_nodes/http` lists these addresses as the cluster's HTTP nodes.
- `tls`: a conftest.Pki: serve https with its server certificate.
Threads are daemons and sockets time out, so nothing outlives or hangs the test run.
"""

import base64
import json
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EsFront:
    def __init__(self, upstream, auth=None, tls=None, reject=None, nodes=None):
        self.upstream = upstream.rstrip("/")
        self.auth = auth
        self.reject = dict(reject or {})
        self.nodes = nodes
        self.bulks = []
        self.paths = []
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30

            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path
                with front.lock:
                    front.paths.append((self.command, path.split("?")[0]))
                if front.auth:
                    want = "Basic " + base64.b64encode(("%s:%s" % front.auth).encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._reply(401, {"error": {"type": "security_exception",
                                                           "reason": "unable to authenticate user"},
                                                 "status": 401})
                if self.command == "GET" and path.startswith("/_nodes/http") and front.nodes:
                    nodes = {"n%d" % i: {"name": "n%d" % i, "http": {"publish_address": a.split("://")[-1]}}
                             for i, a in enumerate(front.nodes)}
                    return self._reply(200, {"cluster_name": "front", "nodes": nodes})
                if self.command == "POST" and path.split("?")[0] == "/_bulk":
                    return self._bulk(body or b"")
                status, data = front.forward(self.command, path, body, self.headers.get("Content-Type"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _bulk(self, body):
                lines = body.decode().splitlines()
                pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
                ids = [json.loads(a)["index"].get("_id") for a, _ in pairs]
                forward, held = [], {}
                with front.lock:
                    front.bulks.append(ids)
                    for k, (pair, _id) in enumerate(zip(pairs, ids)):
                        if front.reject.get(_id, 0) > 0:
                            front.reject[_id] -= 1
                            held[k] = _id
                        else:
                            forward.append(pair)
                items = []
                if forward:
                    payload = "".join(a + "\n" + d + "\n" for a, d in forward).encode()
                    status, data = front.forward("POST", "/_bulk", payload, "application/x-ndjson")
                    if status != 200:
                        return self._reply(status, json.loads(data))
                    items = json.loads(data)["items"]
                out, it = [], iter(items)
                for k in range(len(pairs)):
                    if k in held:
                        out.append({"index": {"_id": held[k], "status": 429, "error": {
                            "type": "es_rejected_execution_exception",
                            "reason": "rejected execution of bulk item (fault injection)"}}})
                    else:
                        out.append(next(it))
                self._reply(200, {"took": 1, "errors": bool(held) or any(
                    "error" in list(i.values())[0] for i in items), "items": out})

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert, tls.key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def forward(self, method, path, body, content_type):
        req = urllib.request.Request(self.upstream + path, data=body, method=method,
                                     headers={"Content-Type": content_type or "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def bulk_ids(self):
        with self.lock:
            return [list(b) for b in self.bulks]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
