"""Prints bench/cluster/cluster_bench.sh's JSON lines (one file) as markdown tables."""
import json
import sys


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    for r in rows:
        if r["system"] == "note":
            print("- " + r["text"])
    print()
    print("| system | phase | puts/s | rec/s | p50 ms | p99 ms | p99.9 ms | failed | longest gap s | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["system"] == "note":
            continue
        print("| %s | %s | %s | %s | %.1f | %.1f | %.1f | %s | %s | %s |" % (
            r["system"], r["phase"], f'{int(r["puts_per_s"]):,}', f'{int(r["rec_per_s"]):,}', r["p50_ms"],
            r["p99_ms"], r["p999_ms"], r["failed"], r["max_gap_s"], r["load"]))
    print()
    print("CPU seconds per phase (utime + stime; postgres-nN = postmaster and its children):")
    print()
    for r in rows:
        if r["system"] != "note" and r.get("cpu_s") and r["phase"] != "steady":
            per = ", ".join("%s %.1f" % kv for kv in sorted(r["cpu_s"].items()))
            total = sum(v for k, v in r["cpu_s"].items())
            print("- %s %s (%s puts): %s; total %.1f s = %.2f ms per put" % (
                r["system"], r["phase"], r["puts"], per, total, 1000 * total / max(1, r["puts"])))


if __name__ == "__main__":
    main(sys.argv[1])
