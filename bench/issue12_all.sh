#!/usr/bin/env bash
# Issue 12's "done means" in one invocation: every benchmark its targets name, one after the
# other in one session on this machine, each writing its own report, with the machine's load
# between them. About 25 minutes on 2 cores (23 in its first run); needs ~11 GB of free disk under /tmp.
#
#   1. bench/run.sh: puts, reads (batch / protobuf / JSON), put p99 at half the sustained maximum
#      (3 repeats), Debian's JetStream 2.9 and the durable JetStream 2.10+ peer, server CPU per
#      record, idle RSS                                    -> bench/out/report.md
#   2. bench/db/run.sh: each connector end to end against its sink alone (item 5)
#                                                          -> bench/out/db.txt
#   3. bench/restart/run.sh, 10 GB in 400 shards, 8 MiB segments (item 7)
#                                                          -> bench/out/restart-10g.md
#   4. bench/restart/run.sh, 5M single-record frames over 100 shards (item 6: index bytes per
#      frame, idle RSS)                                    -> bench/out/restart-5m.md
#
#   bash bench/issue12_all.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
mkdir -p "$out"
stamp() { echo "== $1: $(date -u +%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)"; }

stamp "core benchmark (bench/run.sh)"
bash "$here/run.sh" --records 2000000 --json-records 1000000 --latency-repeats 3
stamp "connectors against their sinks (bench/db/run.sh)"
RUNS=3 DURATION=30 bash "$here/db/run.sh" 2>&1 | tee "$out/db.txt"
stamp "restart, 10 GB in 400 shards (bench/restart/run.sh)"
GB=10 bash "$here/restart/run.sh"
cp "$out/restart.md" "$out/restart-10g.md"
stamp "index memory, 5M single-record frames over 100 shards (bench/restart/run.sh)"
GB=0.68 SHARDS=100 PAYLOAD=100 SEGMENT_BYTES=67108864 bash "$here/restart/run.sh"
cp "$out/restart.md" "$out/restart-5m.md"
stamp "done"
echo "reports: $out/report.md $out/db.txt $out/restart-10g.md $out/restart-5m.md"
