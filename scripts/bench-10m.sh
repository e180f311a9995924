#!/usr/bin/env bash
# Does the publish rate hold as the store grows? Measures single-event durable
# publishes (64 connections, 10% redeliveries) and start-up time on an empty
# store, fills it to FILL events with batches, then measures both again.
#
#   scripts/bench-10m.sh
#   FILL=1000000 RUNS=3 scripts/bench-10m.sh
#
# Needs ~1.5 KB of disk per event under TMPDIR (about 15 GB for 10 million).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

FILL=${FILL:-10000000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
HERALD_ADDR=${HERALD_ADDR:-127.0.0.1:18788}
OUT_DIR=${OUT_DIR:-bench-out}

use_scratch_dir herald-10m
herald_pid=

cargo build --release -j2 -p herald-cli -p herald-bench
load=target/release/herald-load
mkdir -p "$OUT_DIR"
out="$OUT_DIR/bench-10m-$(date +%Y%m%d-%H%M%S).jsonl"

# Starts Herald on the data dir; sets startup_ms to the time until it listens.
startup_ms=
start_herald() {
    local began log="$work/herald.log" _
    : >"$log"
    began=$(date +%s%N)
    target/release/herald serve --listen "$HERALD_ADDR" --data-dir "$work/data" >"$log" 2>&1 &
    herald_pid=$!
    started=("$herald_pid")
    for _ in $(seq 6000); do
        if grep -q "listening on" "$log"; then
            startup_ms=$((($(date +%s%N) - began) / 1000000))
            return 0
        fi
        kill -0 "$herald_pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.01
    done
    echo "herald did not start" >&2
    return 1
}

stop_herald() {
    stop_process "$herald_pid"
    herald_pid=
    started=()
}

# The head position: publish one probe event and read the position it got.
head_position() {
    curl -fsS -X POST "http://$HERALD_ADDR/v1/events" -H 'content-type: application/json' \
        -d '{"source":"bench.probe","detail-type":"Probe","detail":{}}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])'
}

# RUNS closed-loop single-event runs, tagged with the store size.
measure() {
    local label=$1 run
    for run in $(seq "$RUNS"); do
        say "$label: run $run/$RUNS"
        "$load" --json --targets herald --herald-url "http://$HERALD_ADDR" --herald-pid "$herald_pid" \
            --duration "$DURATION" --warmup 2 |
            python3 -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        d = json.loads(l); d["store"] = sys.argv[1]; print(json.dumps(d))' "$label" >>"$out"
    done
}

say "empty store"
start_herald
startup_empty=$startup_ms
measure empty
stop_herald
start_herald
startup_small=$startup_ms

say "filling to $FILL events with batches of 1000"
fill_began=$(date +%s)
while (($(head_position) < FILL)); do
    "$load" --targets herald --herald-url "http://$HERALD_ADDR" --batch 1000 --concurrency 8 \
        --duplicates 0 --duration 60 --warmup 0 2>&1 | grep -E "herald|events/s" >&2 || true
done
fill_secs=$(($(date +%s) - fill_began))
stored=$(head_position)
stop_herald
# The fill leaves gigabytes of dirty pages; measured while the kernel writes
# them back, the full store ran ~8% slower. Flush them first.
sync

say "restarting on $stored events"
start_herald
startup_full=$startup_ms
measure full
data_mib=$(du -sm "$work/data" | cut -f1)
stop_herald

python3 - "$out" "$startup_empty" "$startup_small" "$startup_full" "$stored" "$fill_secs" "$data_mib" <<'EOF' | tee "${out%.jsonl}.txt"
import json, statistics, sys
path, empty_ms, small_ms, full_ms, stored, fill_secs, data_mib = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
def med(store, key):
    return statistics.median(r[key] for r in rows if r.get("kind") == "publish" and r["store"] == store)
print(f"store size        events/s  p50 ms  p99 ms  start-up ms")
for store, label, ms in (("empty", "empty", empty_ms), ("full", f"{int(stored):,} events", full_ms)):
    print(f"{label:<16} {med(store, 'events_per_s'):>9.0f} {med(store, 'p50_us')/1000:>7.2f} "
          f"{med(store, 'p99_us')/1000:>7.2f} {int(ms):>12}")
print(f"full / empty = {med('full', 'events_per_s') / med('empty', 'events_per_s'):.2f}x (events/s); "
      f"start-up on a store of a few thousand events: {small_ms} ms")
print(f"fill: {stored} events in {fill_secs} s ({int(stored) / max(int(fill_secs), 1):.0f} events/s in batches of 1000), "
      f"data dir {data_mib} MiB")
print(f"JSON lines: {path}")
EOF
