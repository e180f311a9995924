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
# bytes/s: a slower disk's bandwidth on this machine, not its latency, and
# only roughly (cgroup v1 charges the kernel's background writeback, such as
# the checkpoint's, to the root group).
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

# The data directory's disk, as major:minor, and its line in /proc/diskstats.
device=$(stat -c '%Hd:%Ld' "$work/data")
sectors_written() { awk -v d="$device" '$1 ":" $2 == d { print $10 }' /proc/diskstats; }
[[ -n $(sectors_written) ]] || { echo "no /proc/diskstats line for $device (TMPDIR on tmpfs?)" >&2; exit 1; }

if [[ -n ${WRITE_BPS:-} ]]; then
    [[ -d /sys/fs/cgroup/blkio ]] || { echo "WRITE_BPS needs cgroup v1's blkio controller" >&2; exit 1; }
    cgroup=/sys/fs/cgroup/blkio/herald-slow-disk
    mkdir -p "$cgroup"
    trap 'clean_up_scratch; rmdir "$cgroup" 2>/dev/null || true' EXIT
    echo "$device $WRITE_BPS" >"$cgroup/blkio.throttle.write_bps_device"
fi

"$HERALD" serve --listen "$HERALD_ADDR" --data-dir "$work/data" >"$work/herald.log" 2>&1 &
pid=$!
started+=("$pid")
[[ -z ${WRITE_BPS:-} ]] || echo "$pid" >"$cgroup/cgroup.procs"
wait_for_log "$pid" "$work/herald.log" "listening on"

# User + system ticks from a stat file: the name is between the first "("
# and the last ")", the times follow it.
stat_ticks() { sed 's/.*) //' "$1" | awk '{ print $12 + $13 }'; }
# "thread-id name ticks" for each thread of the server.
ticks() {
    local t
    for t in /proc/"$pid"/task/*; do
        echo "${t##*/} $(tr ' ' _ <"$t/comm") $(stat_ticks "$t/stat")"
    done
}
process_ticks() { stat_ticks /proc/"$pid"/stat; }
# Events sent to the writer: appended or found duplicate.
published() { curl -s "http://$HERALD_ADDR/metrics" | awk '/^herald_store_commit_events_sum/ { print $2 }'; }

ticks >"$work/ticks.0"
cpu0=$(process_ticks)
events0=$(published)
sectors0=$(sectors_written)

if ! target/release/herald-load --targets herald --herald-url "http://$HERALD_ADDR" \
    --duration "$DURATION" --warmup 2 "$@" >"$work/load.out" 2>&1; then
    cat "$work/load.out" >&2
    exit 1
fi
grep '^herald:' "$work/load.out"

ticks >"$work/ticks.1"
cpu=$(($(process_ticks) - cpu0))
events=$(($(published) - events0))
sectors=$(($(sectors_written) - sectors0))
hz=$(getconf CLK_TCK)
# Joined on thread id: a thread that started during the run began at 0.
awk -v hz="$hz" -v n="$events" '
    NR == FNR { before[$1] = $3; next }
    { cpu[$2] += $3 - before[$1] }
    END { for (t in cpu) print t, cpu[t] * 1e6 / hz / n }' "$work/ticks.0" "$work/ticks.1" |
    sort -k2 -rn | awk '$2 >= 0.1 { printf "  %-18s %6.1f us CPU/event\n", $1, $2 }'
awk -v c="$cpu" -v hz="$hz" -v n="$events" -v s="$sectors" 'BEGIN {
    printf "  %-18s %6.1f us CPU/event (%d events published)\n", "server", c * 1e6 / hz / n, n
    printf "  %-18s %6.1f KB/event\n", "disk written", s * 512 / n / 1000 }'
