"""Fixtures of the pydatahub conformance suite.

A session-wide `sluice serve` is started from $SLUICE_BIN (required) on a free loopback port with
a private data dir; tests get pydatahub clients for it in each protocol (JSON, PB, BATCH) and
compression (NONE, LZ4, ZLIB, DEFLATE). Durability tests start their own private servers with
`sluice_factory` and restart them on the same data dir (SIGTERM or SIGKILL). `https_server` is a
session-wide server over HTTPS, with a CA and a server certificate made by `openssl` (`pki`).

External endpoint (issue 14: the cluster behind haproxy): with SLUICE_EXTERNAL_ENDPOINT set, no
server is started; the tests talk to that endpoint with SLUICE_EXTERNAL_ACCESS_ID /
SLUICE_EXTERNAL_ACCESS_KEY (default: util's compat credentials), and only the tests listed in
cluster_ok.py run (the others are deselected, not skipped). See cluster_ok.py for the list.
"""

import atexit
import collections
import ctypes
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

import cluster_ok
from sign import RawClient
from util import ACCESS_ID, ACCESS_KEY, MATRIX, make_client, unique_name

HEALTH_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0

_LIVE_SERVERS = set()


def _die_with_parent():
    """Runs in the child before exec: SIGKILL the server if pytest itself dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@atexit.register
def _kill_leftover_servers():
    for srv in list(_LIVE_SERVERS):
        srv.stop(signal.SIGKILL)


def _stop_servers_then_die(signum, frame):
    # pytest would only record a SystemExit as a failed test and go on: stop the servers this
    # run started, then die of the signal as if there were no handler.
    _kill_leftover_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


signal.signal(signal.SIGTERM, _stop_servers_then_die)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sluice_bin():
    path = os.environ.get("SLUICE_BIN", "")
    if not path:
        pytest.fail("SLUICE_BIN is not set: point it at the `sluice` binary "
                    "(scripts/test.sh does: $CARGO_TARGET_DIR/release/sluice)", pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("SLUICE_BIN=%s is not an executable file" % path, pytrace=False)
    return path


class SluiceServer:
    """One `sluice serve` process on a fixed port and data dir; can be stopped and started again."""

    def __init__(self, binary, data_dir, log_path, access_id=ACCESS_ID, access_key=ACCESS_KEY, config=None,
                 tls=None):
        self.binary = binary
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.access_id = access_id
        self.access_key = access_key
        self.port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.tls = tls  # a Pki: serve HTTPS with its server certificate
        self.verify = False
        if tls:
            self.endpoint = "https://127.0.0.1:%d" % self.port
            self.verify = tls.ca
        self.proc = None
        self._log = None
        self.config_path = None
        if config:
            # a `--config` TOML file next to the data dir, e.g. {"connector_batch_records": 5}
            self.config_path = str(data_dir) + ".toml"
            with open(self.config_path, "w") as f:
                f.writelines("%s = %s\n" % (k, json.dumps(v)) for k, v in config.items())

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_paths(self):
        return [self.log_path]

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no log)"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def start(self, timeout=HEALTH_TIMEOUT_S):
        assert not self.alive(), "server already running"
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(b"\n===== start %s =====\n" % time.strftime("%H:%M:%S").encode())
        self._log.flush()
        cmd = [self.binary, "serve", "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data_dir,
               "--access-id", self.access_id, "--access-key", self.access_key]
        if self.config_path:
            cmd += ["--config", self.config_path]
        if self.tls:
            cmd += ["--tls-cert", self.tls.cert, "--tls-key", self.tls.key]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        _LIVE_SERVERS.add(self)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sluice serve exited with %s during start-up; log tail:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                resp = requests.get(self.endpoint + "/health", timeout=1, verify=self.verify)
                if resp.status_code == 200:
                    return self
                last = "GET /health -> %d %r" % (resp.status_code, resp.content[:200])
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError("sluice serve did not answer GET /health with 200 within %.0fs (last: %s); log tail:\n%s"
                             % (timeout, last, self.log_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Send `sig`, wait for exit (SIGKILL after `timeout`), return the exit status (None if it
        had to be killed after the timeout)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        self.proc = None
        _LIVE_SERVERS.discard(self)
        if self._log:
            self._log.close()
            self._log = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self, sig=signal.SIGTERM):
        """Stop with `sig` (SIGTERM: graceful, SIGKILL: crash) and start again on the same port and
        data dir. Returns the exit status of the stopped process."""
        rc = self.stop(sig)
        self.start()
        return rc

    def client(self, protocol="json", compress="lz4", **kw):
        """A pydatahub client; over HTTPS it verifies the server against the test CA."""
        client = make_client(self.endpoint, protocol, compress, **kw)
        if self.tls:
            verify_with(client, self.tls.ca)
        return client

    def raw(self):
        raw = RawClient(self.endpoint, self.access_id, self.access_key)
        if self.tls:
            raw.session.verify = self.tls.ca
        return raw


class VerifyingAdapter(HTTPAdapter):
    """Verifies HTTPS servers against `ca` (a PEM file; True: the system's roots), whatever the
    caller asked: pydatahub 2.29.0 sends every request with `verify=False` (datahub/rest.py:298),
    so neither REQUESTS_CA_BUNDLE nor a session's `verify` reaches it."""

    def __init__(self, ca, **kw):
        self.ca = ca
        super().__init__(**kw)

    def send(self, request, **kw):
        kw["verify"] = self.ca
        return super().send(request, **kw)


def verify_with(client, ca):
    """Makes a pydatahub client verify the server's certificate against `ca` (see VerifyingAdapter)."""
    client._datahub_impl._rest_client._session.mount("https://", VerifyingAdapter(ca, max_retries=0))
    return client


class Pki:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1 (EC P-256), made
    with `openssl` in `directory`."""

    def __init__(self, directory):
        d = str(directory)
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def openssl(*args):
            try:
                subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
            except FileNotFoundError:
                pytest.fail("openssl is needed to make the HTTPS test certificates", pytrace=False)
            except subprocess.CalledProcessError as e:
                pytest.fail("openssl %s: %s" % (args[0], e.stderr.decode()), pytrace=False)

        openssl("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
                "-subj", "/CN=Sluice compat CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "server.ext", "-out", "server.pem")


_SESSION_SERVER = []


class ExternalServer:
    """A server this run did not start (SLUICE_EXTERNAL_ENDPOINT, e.g. haproxy in front of the
    cluster's nodes): the same client-making interface as SluiceServer; it cannot be stopped."""

    def __init__(self, endpoint, access_id, access_key, log_glob=""):
        self.endpoint = endpoint.rstrip("/")
        self.access_id = access_id
        self.access_key = access_key
        self.log_glob = log_glob
        self.tls = None
        self.proc = None

    def alive(self):
        return True

    def log_paths(self):
        import glob
        return sorted(glob.glob(self.log_glob)) if self.log_glob else []

    def log_tail(self, lines=40):
        import glob
        parts = []
        for path in sorted(glob.glob(self.log_glob)) if self.log_glob else []:
            with open(path, "rb") as f:
                tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
            parts.append("---- %s\n%s" % (path, "\n".join(tail)))
        return "\n".join(parts) or "(external server %s: no log)" % self.endpoint

    def client(self, protocol="json", compress="lz4", **kw):
        kw.setdefault("access_id", self.access_id)
        kw.setdefault("access_key", self.access_key)
        return make_client(self.endpoint, protocol, compress, **kw)

    def raw(self):
        return RawClient(self.endpoint, self.access_id, self.access_key)


def external_server():
    """The ExternalServer named by SLUICE_EXTERNAL_ENDPOINT, or None."""
    endpoint = os.environ.get("SLUICE_EXTERNAL_ENDPOINT", "")
    if not endpoint:
        return None
    return ExternalServer(endpoint, os.environ.get("SLUICE_EXTERNAL_ACCESS_ID", ACCESS_ID),
                          os.environ.get("SLUICE_EXTERNAL_ACCESS_KEY", ACCESS_KEY),
                          os.environ.get("SLUICE_EXTERNAL_LOG_GLOB", ""))


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster_ok: runs against an external endpoint (the cluster)")


def pytest_collection_modifyitems(config, items):
    """Against an external endpoint only the cluster_ok tests run; the rest are deselected."""
    for item in items:
        if cluster_ok.runs_on_cluster(item.nodeid, item.fixturenames):
            item.add_marker(pytest.mark.cluster_ok)
    if not os.environ.get("SLUICE_EXTERNAL_ENDPOINT"):
        return
    keep = [i for i in items if i.get_closest_marker("cluster_ok")]
    dropped = [i for i in items if not i.get_closest_marker("cluster_ok")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    external = external_server()
    if external is not None:
        _SESSION_SERVER.append(external)
        yield external
        _SESSION_SERVER.remove(external)
        return
    binary = sluice_bin()
    base = tmp_path_factory.mktemp("sluice-session")
    srv = SluiceServer(binary, base / "data", base / "sluice.log")
    srv.start()
    _SESSION_SERVER.append(srv)
    yield srv
    _SESSION_SERVER.remove(srv)
    srv.stop(signal.SIGTERM)


@pytest.fixture(autouse=True)
def _server_still_running(request, server):
    """Every test ends with the session server still alive: a crash is reported where it happened."""
    yield
    if not server.alive():
        rc = server.proc.returncode if server.proc else None
        tail = server.log_tail()
        # Bring it back so that one crash does not fail every later test.
        server.stop()
        server.start()
        pytest.fail("sluice serve died during this test (exit status %s); log tail:\n%s" % (rc, tail),
                    pytrace=False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if external_server() is not None:
        pytest.fail("this test needs its own server (TLS): it cannot run against "
                    "SLUICE_EXTERNAL_ENDPOINT", pytrace=False)
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def https_server(tmp_path_factory, pki):
    """A session-wide `sluice serve --tls-cert --tls-key` (endpoint https://127.0.0.1:PORT)."""
    base = tmp_path_factory.mktemp("sluice-https")
    srv = SluiceServer(sluice_bin(), base / "data", base / "sluice.log", tls=pki)
    srv.start()
    yield srv
    srv.stop(signal.SIGTERM)


@pytest.fixture
def sluice_factory(tmp_path):
    """Start private servers (own port and data dir) for tests that stop and restart them."""
    if external_server() is not None:
        pytest.fail("this test starts private servers: it cannot run against "
                    "SLUICE_EXTERNAL_ENDPOINT", pytrace=False)
    binary = sluice_bin()
    started = []

    def start(name="private", config=None):
        srv = SluiceServer(binary, tmp_path / (name + "-data"), tmp_path / (name + ".log"), config=config)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop(signal.SIGKILL)


@pytest.fixture
def endpoint(server):
    return server.endpoint


@pytest.fixture
def dh(server):
    """JSON client with the SDK's default compression (LZ4), for metadata calls."""
    return server.client("json", "lz4")


@pytest.fixture
def client_factory(server):
    def make(protocol="json", compress="lz4", **kw):
        return server.client(protocol, compress, **kw)

    return make


MatrixClient = collections.namedtuple("MatrixClient", "protocol compress client")


@pytest.fixture(params=MATRIX)
def matrix_client(request, server):
    """One pydatahub client per protocol x compression (12 variants, ids like `pb-zlib`)."""
    protocol, compress = request.param
    return MatrixClient(protocol, compress, server.client(protocol, compress))


@pytest.fixture
def raw(server):
    return server.raw()


@pytest.fixture
def project(dh):
    """A fresh project for this test."""
    name = unique_name("p")
    dh.create_project(name, "compat test project")
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _SESSION_SERVER:
        rep.sections.append(("sluice serve log (tail)", _SESSION_SERVER[0].log_tail(25)))


def pytest_sessionfinish(session, exitstatus):
    """A skipped or expected-to-fail test proves nothing: the run fails if any test skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", [])) + len(reporter.stats.get("xfailed", []))
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"error: {skipped} test(s) skipped or xfailed; every test must run", red=True)
        session.exitstatus = 1
