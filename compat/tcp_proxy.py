"""A small TCP proxy a test owns, to cut and restore a sink's connection to its target without
touching the shared database or server (other tests and engineers use them).

    proxy = TcpProxy("127.0.0.1", 3306)   # listens on 127.0.0.1:proxy.port
    proxy.cut()       # closes every open connection; new ones are accepted and closed at once
    proxy.restore()   # forwards again
    proxy.close()

Threads: one accept loop, two pumps per connection. Everything is a daemon thread with socket
timeouts, so nothing outlives or hangs the test run.
"""

import socket
import threading

CONNECT_TIMEOUT_S = 5.0


class TcpProxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, int(target_port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.host = "127.0.0.1"
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks = set()
        self._cut = False
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy-%d" % self.port, daemon=True)
        self._thread.start()

    def cut(self):
        """Drops every connection and refuses new ones until restore()."""
        with self._lock:
            self._cut = True
            socks, self._socks = self._socks, set()
        for s in socks:
            _kill(s)

    def restore(self):
        with self._lock:
            self._cut = False

    def close(self):
        self.cut()
        self._closed = True
        self._thread.join(timeout=2)
        self._listener.close()

    def _accept_loop(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                self.refused += 1
                _kill(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                _kill(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._cut:
                    _kill(client)
                    _kill(upstream)
                    continue
                self._socks.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # one side ended: end both, so the peer sees it too
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)
            _kill(src)
            _kill(dst)


def _kill(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
