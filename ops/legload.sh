#!/usr/bin/env bash
# Media load of a running gateway over loopback UDP: LEGS calls held in one room (3 talking, the
# others sending silence), each streaming PCMU from its own socket and reading what comes back
# (tests/src/bin/legload.rs), with WORKERS media workers. Builds release binaries, starts a
# gateway with SQLite in a temporary directory, creates the users and the room, and prints the
# gateway's CPU and memory per leg, the packets each leg got, and the generator's own figures.
#   [GATEWAY=path] [MALLOCS=1] [CODEC=opus] bash ops/legload.sh [LEGS] [WORKERS] [SECONDS] [ROOMS]
# MALLOCS=1 also counts the gateway's calls to malloc each second (a perf uprobe on libc's
# malloc: root and perf needed) and prints the median of the last SECONDS seconds, the
# generator's measured window.
# ROOMS > 1 spreads the legs over that many rooms (1000, 1001, …), one generator each; each
# generator reports the whole gateway's CPU over its window (the windows overlap).
# CODEC=opus: each leg offers Opus with DTX and the silent ones send a DTX frame every 400 ms,
# as browsers do.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
legs=${1:-1000}
workers=${2:-1}
seconds=${3:-20}
rooms=${4:-1}
users=100

load_prepare legload
# Into the [rtp] table load_prepare wrote last.
cat >> "$work/gateway.toml" <<TOML
workers = $workers
[conference]
max_participants = 100000
# One generator on one address stands for thousands of phones: no per-source rate.
[limits]
requests_per_source = 0
TOML
load_accounts "$gateway" "$work" "$users" load load-password $(seq 1000 $((1000 + rooms - 1)))
load_start "$gateway" "$work" "$port"

codec=${CODEC:-pcmu}
echo "== $legs $codec legs in $rooms room(s), $workers media worker(s), $(nproc) cores, $seconds s measured"
warmup=$((5 + legs / 200))
if [ "${MALLOCS:-}" = 1 ]; then
    libc=$(ldd "$gateway" | awk '/libc\.so/ {print $3}')
    perf probe -l 2>/dev/null | grep -q "probe_libc:malloc" || perf probe -q -x "$libc" -a malloc
    perf stat -I 1000 -x, -e probe_libc:malloc -p "$gw" 2> "$work/mallocs" &
    perf=$!
fi
pids=()
for r in $(seq 0 $((rooms - 1))); do
    "$bin/legload" --gateway "127.0.0.1:$port" --room $((1000 + r)) --users "$users" \
        --legs $((legs / rooms)) --codec "$codec" --seconds "$seconds" --warmup "$warmup" --pid "$gw" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
if [ "${MALLOCS:-}" = 1 ]; then
    kill -INT "$perf"
    wait "$perf" || true
    # Lines of `perf stat -I -x,`: time,count,unit,event,…
    median=$(awk -F, '/probe_libc:malloc/ {print $2}' "$work/mallocs" | tail -n "$seconds" | sort -n \
        | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
    echo "== gateway malloc calls: median $median a second over the last $seconds s," \
        "$(awk -v m="$median" -v l="$legs" 'BEGIN {printf "%.2f", m / l}') a second per leg"
fi
echo "== gateway warnings: $(grep -c . "$work/gateway.log" || true) lines"
grep -m 5 "skipped\|WARN" "$work/gateway.log" || true
