#!/usr/bin/env bash
# What one publish costs Herald: CPU per event by thread and disk bytes per
# event, beside the rate. Throughput on two shared cores swings +-10% from
# run to run; CPU per event swings far less, so it is what A/B comparisons
# of two builds should look at first.
#
#   scripts/cpu-per-event.sh                      # single events, 64 connections
#   scripts/cpu-per-event.sh --batch 100          # any further herald-load arguments
#   HERALD=/tmp/other-build/herald scripts/cpu-per-event.sh
#   WRITE_BPS=200000000 scripts/cpu-per-event.sh  # a disk that writes 200 MB/s
#
# WRITE_BPS runs Herald in a cgroup (v1 blkio, needs root) whose writes to the
# disk under TMPDIR (a whole disk, not a partition) are throttled to that many
# bytes/s: a slower disk's bandwidth on this machine, not its latency.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

HERALD=${HERALD:-target/release/herald}
HERALD_ADDR=${HERALD_ADDR:-127.0.0.1:18789}
DURATION=${DURATION:-8}

use_scratch_dir herald-cpu
require_free_port "${HERALD_ADDR##*:}"
cargo build --release -j2 -p herald-cli -p herald-bench >&2
mkdir -p "$work/data"

if [[ -n ${WRITE_BPS:-} ]]; then
    cgroup=/sys/fs/cgroup/blkio/herald-slow-disk
    disk=$(stat -c '%d' "$work/data")
    mkdir -p "$cgroup"
    printf '%d:%d %s\n' $((disk >> 8)) $((disk & 255)) "$WRITE_BPS" >"$cgroup/blkio.throttle.write_bps_device"
fi

"$HERALD" serve --listen "$HERALD_ADDR" --data-dir "$work/data" >"$work/herald.log" 2>&1 &
pid=$!
started+=("$pid")
[[ -z ${WRITE_BPS:-} ]] || echo "$pid" >"$cgroup/cgroup.procs"
wait_for_log "$pid" "$work/herald.log" "listening on"

# Thread name and CPU ticks (user + system) of every thread of the server.
ticks() { for t in /proc/"$pid"/task/*; do echo "$(tr ' ' _ <"$t/comm") $(cut -d' ' -f14,15 "$t/stat")"; done; }
appended() { curl -s "http://$HERALD_ADDR/metrics" | awk '/^herald_store_commit_events_sum/ { print $2 }'; }
sectors_written() { awk -v d="$(stat -c '%d' "$work/data")" '$1 * 256 + $2 == d { print $10 }' /proc/diskstats; }
ticks >"$work/ticks.0"
events0=$(appended)
sectors0=$(sectors_written)

target/release/herald-load --targets herald --herald-url "http://$HERALD_ADDR" \
    --duration "$DURATION" --warmup 2 "$@" 2>&1 | grep '^herald:'

ticks >"$work/ticks.1"
events=$(($(appended) - events0))
# Partitions count toward their disk in /proc/diskstats' own line only: a
# data directory on a partition reports that partition's writes.
sectors=$(($(sectors_written) - sectors0))
hz=$(getconf CLK_TCK)
per_thread() {
    paste -d' ' "$work/ticks.0" "$work/ticks.1" |
        awk -v hz="$hz" -v n="$events" '{ cpu[$1] += ($5 + $6) - ($2 + $3) } END { for (t in cpu) print t, cpu[t] * 1e6 / hz / n }'
}
per_thread | sort -k2 -rn | awk '$2 >= 0.1 { printf "  %-18s %6.1f us CPU/event\n", $1, $2 }'
per_thread | awk -v n="$events" '{ total += $2 } END { printf "  %-18s %6.1f us CPU/event (%d events appended)\n", "server", total, n }'
awk -v s="$sectors" -v n="$events" 'BEGIN { printf "  disk written       %6.1f KB/event\n", s * 512 / n / 1000 }'

if [[ -n ${WRITE_BPS:-} ]]; then
    stop_process "$pid"
    rmdir "$cgroup"
fi
