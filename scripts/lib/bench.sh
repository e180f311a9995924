# Helpers the benchmark scripts share; source it, do not run it.

say() { printf '\n== %s\n' "$*" >&2; }

# Waits up to 30 s for PATTERN in LOG while PID is alive.
wait_for_log() {
    local pid=$1 log=$2 pattern=$3 _
    for _ in $(seq 300); do
        grep -q "$pattern" "$log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "process $pid exited" >&2; return 1; }
        sleep 0.1
    done
    cat "$log" >&2
    echo "timed out waiting for '$pattern' in $log" >&2
    return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Exits when something already listens on 127.0.0.1:PORT.
require_free_port() {
    if port_open "$1"; then
        echo "port $1 is already in use" >&2
        exit 1
    fi
}

# Stops the child process PID, if one is given, and waits for it; never fails.
stop_process() {
    [[ -n ${1:-} ]] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Creates the scratch directory $work (named after $1, under TMPDIR) and, on
# exit or interrupt, stops every process in the array `started` and removes
# $work. Scripts list what they start: started+=("$pid").
use_scratch_dir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    started=()
    trap clean_up_scratch EXIT
    trap 'exit 130' INT TERM
}

clean_up_scratch() {
    local pid
    for pid in "${started[@]}"; do
        stop_process "$pid"
    done
    rm -rf "$work"
}
