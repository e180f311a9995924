#!/usr/bin/env bash
# What subscriptions that match nothing cost publishers: single-event publish
# rate on a fresh Herald, then again after adding SUBS pull subscriptions whose
# pattern matches no event. ROUNDS rounds, each on a fresh server.
#
#   scripts/bench-idle-subscriptions.sh
#   ROUNDS=5 SUBS=1000 scripts/bench-idle-subscriptions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-100}
DURATION=${DURATION:-6}
HERALD_ADDR=${HERALD_ADDR:-127.0.0.1:18787}

use_scratch_dir herald-idle

say "building"
cargo build --release -j2 -p herald-cli -p herald-bench
require_free_port "${HERALD_ADDR##*:}"

rate() {
    target/release/herald-load --targets herald --herald-url "http://$HERALD_ADDR" \
        --duration "$DURATION" --warmup 1 --json 2>/dev/null |
        python3 -c 'import json,sys; print(round(next(json.loads(l) for l in sys.stdin if "\"publish\"" in l)["events_per_s"]))'
}

for round in $(seq "$ROUNDS"); do
    rm -rf "$work/herald"
    target/release/herald serve --listen "$HERALD_ADDR" --data-dir "$work/herald" >"$work/herald.log" 2>&1 &
    pid=$!
    started=("$pid")
    wait_for_log "$pid" "$work/herald.log" "listening on"
    before=$(rate)
    for i in $(seq "$SUBS"); do
        curl -fsS -o /dev/null -X PUT "http://$HERALD_ADDR/v1/subscriptions/none-$i" \
            -H 'content-type: application/json' \
            -d "{\"pattern\": {\"source\": [\"nothing-$i\"]}, \"target\": {\"type\": \"pull\"}}"
    done
    after=$(rate)
    stop_process "$pid"
    started=()
    echo "round $round: no subscription $before events/s, $SUBS non-matching subscriptions $after events/s," \
        "ratio $(python3 -c "print(round($after / $before, 2))")"
done
