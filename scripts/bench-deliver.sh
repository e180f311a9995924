#!/usr/bin/env bash
# Delivery benchmark: webhook deliveries of one Herald to a receiver inside
# the load driver (same process as the publishers, so the clocks agree).
#
# Builds release, starts Herald on loopback with a fresh data directory (and
# private targets allowed, since the receiver is on 127.0.0.1), runs
# `herald-load deliver` (publish-to-delivery latency, fan-out to 100
# subscriptions, a dead target's memory), and stops what it started on exit.
#
#   scripts/bench-deliver.sh
#   RATE=5000 DURATION=20 SCENARIOS=latency scripts/bench-deliver.sh
#
# JSON lines and the summary are kept in $OUT_DIR (default bench-out/).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

RATE=${RATE:-2000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PUBLISHERS=${PUBLISHERS:-8}
SCENARIOS=${SCENARIOS:-latency,fanout,dead}
FANOUT_SUBSCRIPTIONS=${FANOUT_SUBSCRIPTIONS:-100}
FANOUT_EVENTS=${FANOUT_EVENTS:-2000}
DEAD_EVENTS=${DEAD_EVENTS:-10000}
DEAD_RATE=${DEAD_RATE:-1000}
HERALD_ADDR=${HERALD_ADDR:-127.0.0.1:18789}
OUT_DIR=${OUT_DIR:-bench-out}

use_scratch_dir herald-deliver


say "building"
cargo build --release -j2 -p herald-cli -p herald-bench
load=target/release/herald-load

say "starting herald on $HERALD_ADDR"
require_free_port "${HERALD_ADDR##*:}"
HERALD_ALLOW_PRIVATE_TARGETS=true target/release/herald serve --listen "$HERALD_ADDR" --data-dir "$work/herald" \
    >"$work/herald.log" 2>&1 &
herald_pid=$!
started+=("$herald_pid")
wait_for_log "$herald_pid" "$work/herald.log" "listening on"
curl -fsS "http://$HERALD_ADDR/healthz" >/dev/null

mkdir -p "$OUT_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
out="$OUT_DIR/bench-deliver-$stamp.jsonl"
summary="$OUT_DIR/bench-deliver-$stamp.txt"

say "herald-load deliver ($SCENARIOS)"
# The human report goes to stderr: keep it as the summary, JSON lines in $out.
set +e
"$load" deliver --json --herald-url "http://$HERALD_ADDR" --herald-pid "$herald_pid" \
    --scenarios "$SCENARIOS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
    --publishers "$PUBLISHERS" --fanout-subscriptions "$FANOUT_SUBSCRIPTIONS" --fanout-events "$FANOUT_EVENTS" \
    --dead-events "$DEAD_EVENTS" --dead-rate "$DEAD_RATE" \
    2>&1 >"$out" | tee "$work/report.txt" >&2
status=${PIPESTATUS[0]}
set -e

if ! kill -0 "$herald_pid" 2>/dev/null; then
    echo "herald exited during the run; its log:" >&2
    tail -50 "$work/herald.log" >&2
    status=1
fi

{
    echo "Delivery benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), herald on $HERALD_ADDR (fresh data dir)"
    # The report without the progress lines of the driver.
    grep -v -E '^(receiver listening|latency:|fan-out:|dead target:)' "$work/report.txt" || true
    echo
    echo "JSON lines: $out"
} | tee "$summary"
exit "$status"
