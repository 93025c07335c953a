"""What a data sync costs on this disk for an append-only segment, growing vs zero-filled ahead
of use (the question behind the put tail, bench/README.md "Issue 12, seventh pass").

K threads, each on its own file (one per shard), append N chunks of CHUNK bytes (a 1000-record
protobuf put as the log stores it: 166,032 bytes) and `fdatasync` after each, like the shard
log's group commit with one put per sync. Mode `grow`: the file grows with each append (what
the shard log does today), so every sync also commits the file system's journal (the size and
the blocks changed). Mode `zero`: the file is first written with zeros to its full size and
synced, so an append overwrites allocated blocks and a data sync needs no metadata (what
PostgreSQL does for its WAL, `wal_init_zero`). Mode `falloc`: the file is first
`posix_fallocate`d to full size (allocated but unwritten blocks: the first write to each still
changes the file system's extent map, so a sync still commits metadata). Prints
p50/p90/p99/max of append + sync, in ms.

    python3 bench/fsync/fsync_probe.py DIR [K=4] [N=400]
"""

import os
import sys
import threading
import time

CHUNK = 166_032


def appender(path, mode, n, chunk, barrier, out):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode == "zero":
            zeros = bytes(1 << 20)
            for off in range(0, n * len(chunk) + len(zeros), len(zeros)):
                os.pwrite(fd, zeros, off)
            os.fsync(fd)
        elif mode == "falloc":
            os.posix_fallocate(fd, 0, n * len(chunk))
            os.fsync(fd)
        barrier.wait()
        off = 0
        for _ in range(n):
            t = time.perf_counter()
            os.pwrite(fd, chunk, off)
            os.fdatasync(fd)
            out.append((time.perf_counter() - t) * 1000)
            off += len(chunk)
    finally:
        os.close(fd)
        os.unlink(path)


def run(directory, mode, k, n):
    chunk = os.urandom(CHUNK)
    barrier = threading.Barrier(k)
    lat = []
    threads = [threading.Thread(target=appender, args=(os.path.join(directory, "%s-%d" % (mode, i)), mode, n,
                                                        chunk, barrier, lat)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()

    def q(x):
        return lat[min(len(lat) - 1, int(x * len(lat)))]
    print("%-6s %d files x %d appends of %d B + fdatasync: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms"
          % (mode, k, n, CHUNK, q(0.5), q(0.9), q(0.99), lat[-1]))


def main():
    directory = sys.argv[1]
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    os.makedirs(directory, exist_ok=True)
    for _ in range(2):
        run(directory, "grow", k, n)
        run(directory, "zero", k, n)
        run(directory, "falloc", k, n)


if __name__ == "__main__":
    main()
