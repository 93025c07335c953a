#!/usr/bin/env python3
"""Memory under worst-case puts (issue 7, finding 5): peak and idle RSS of `sluice serve`.

Starts the given binary on a private port and data dir, then for each scenario sends
CONCURRENCY puts at once, ROUNDS times, and records the server's peak RSS (VmHWM, reset
before each scenario) and, at the end, its RSS after IDLE_SECS without load, next to the RSS
of the fresh server. Python's standard library only; requests are signed like the SDKs sign.

Scenarios (all bodies ~8 MB, the default max_request_bytes):
  pb-empty    protobuf put by shard: 2M empty BLOB records (4 bytes each), the issue's repro
  pb-wide     protobuf put by shard: 10,000 records of ~400 empty values each (within the
              record count; refused per record only after decoding)
  json-empty  JSON routed put: ~730k records {"Data":""}
  json-wide   JSON routed put: 10,000 records of ~160 nulls each
  pb-valid    protobuf put by shard: 10,000 BLOB records of 800 bytes (accepted)

usage: memory_bench.py BINARY [--label NAME] [--idle-secs 30]
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate

ID, KEY = "mem-id", "mem-key"
CONCURRENCY = 8
ROUNDS = 3
BODY = (8 << 20) - 64  # under max_request_bytes with the 12-byte DHUB frame


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def envelope(message):
    return b"DHUB" + struct.pack(">II", crc32c(message), len(message)) + message


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, payload):
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def sign(method, path, ctype, date, headers):
    dh = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-datahub-"))
    canonical = "\n".join([method, ctype, date] + [f"{k}:{v}" for k, v in dh] + [path])
    mac = hmac.new(KEY.encode(), canonical.encode(), hashlib.sha1).digest()
    return f"DATAHUB {ID}:{base64.b64encode(mac).decode()}"


def request(port, method, path, body, ctype="application/json", extra=None, timeout=600):
    headers = {"x-datahub-client-version": "1.1"}
    headers.update(extra or {})
    date = formatdate(usegmt=True)
    headers.update({"Content-Type": ctype, "Date": date,
                    "Authorization": sign(method, path, ctype, date, headers)})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def bodies():
    pb = {"x-datahub-request-action": "pub"}
    empty_rec = field(1, field(9, b""))  # RecordEntry { data: RecordData {} }
    pb_empty = envelope(empty_rec * (BODY // len(empty_rec)))
    wide_rec = field(1, field(9, field(1, b"") * 398))  # 398 FieldData { value: None }
    pb_wide = envelope(wide_rec * 10_000)
    valid_rec = field(1, field(9, field(1, field(1, b"v" * 800))))
    pb_valid = envelope(valid_rec * 10_000)
    unit = '{"Data":""},'
    n = (BODY - 40) // len(unit)
    json_empty = ('{"Action":"pub","Records":[' + unit * n + '{"Data":""}]}').encode()
    cells = ",".join(["null"] * 160)
    wide = '{"Data":[' + cells + "]},"
    json_wide = ('{"Action":"pub","Records":[' + wide * 9_999 + wide[:-1] + "]}").encode()
    shard = "/projects/mem/topics/blob/shards/0"
    routed = "/projects/mem/topics/%s/shards"
    return [
        ("pb-empty", shard, pb_empty, "application/x-protobuf", pb),
        ("pb-wide", "/projects/mem/topics/tuple/shards/0", pb_wide, "application/x-protobuf", pb),
        ("json-empty", routed % "blob", json_empty, "application/json", {}),
        ("json-wide", routed % "tuple", json_wide, "application/json", {}),
        ("pb-valid", shard, pb_valid, "application/x-protobuf", pb),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--label", default=None)
    ap.add_argument("--idle-secs", type=int, default=30)
    args = ap.parse_args()
    label = args.label or args.binary
    work = tempfile.mkdtemp(prefix="sluice-mem-")
    port = free_port()
    log = open(os.path.join(work, "server.log"), "w")
    env = dict(os.environ, SLUICE_LOG="warn", SLUICE_ACCESS_KEY=KEY)
    proc = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
         os.path.join(work, "data"), "--access-id", ID],
        stdout=log, stderr=log, env=env)
    try:
        for _ in range(200):
            try:
                if request(port, "GET", "/health", b"")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        request(port, "POST", "/projects/mem", json.dumps({"Comment": "m"}).encode())
        request(port, "POST", "/projects/mem/topics/blob", json.dumps(
            {"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}).encode())
        schema = json.dumps({"fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}]})
        request(port, "POST", "/projects/mem/topics/tuple", json.dumps(
            {"ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE", "RecordSchema": schema,
             "Comment": ""}).encode())
        time.sleep(1)
        fresh = rss_kib(proc.pid, "VmRSS")
        print(f"## {label}\n")
        print(f"fresh server RSS: {fresh / 1024:.0f} MiB "
              f"(anonymous {rss_kib(proc.pid, 'RssAnon') / 1024:.0f} MiB)\n")
        print("| scenario | body MiB | statuses | peak RSS MiB | wall s |")
        print("|---|---|---|---|---|")
        for name, path, body, ctype, extra in bodies():
            with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM
            statuses = {}
            lock = threading.Lock()

            def worker():
                for _ in range(ROUNDS):
                    try:
                        st, _ = request(port, "POST", path, body, ctype, extra)
                    except OSError as e:
                        st = type(e).__name__
                    with lock:
                        statuses[st] = statuses.get(st, 0) + 1

            start = time.time()
            threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.time() - start
            if proc.poll() is not None:
                print(f"| {name} | server died (exit {proc.returncode}) | | | |")
                break
            peak = rss_kib(proc.pid, "VmHWM")
            st = ", ".join(f"{k}x{v}" for k, v in sorted(statuses.items(), key=str))
            print(f"| {name} | {len(body) / 2**20:.1f} | {st} | {peak / 1024:.0f} | {wall:.1f} |")
            sys.stdout.flush()
        if proc.poll() is None:
            time.sleep(args.idle_secs)
            idle = rss_kib(proc.pid, "VmRSS")
            anon = rss_kib(proc.pid, "RssAnon")
            print(f"\nidle RSS {args.idle_secs} s after the load: {idle / 1024:.0f} MiB "
                  f"({idle / max(fresh, 1):.1f}x the fresh server's; anonymous {anon / 1024:.0f} MiB)\n")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
