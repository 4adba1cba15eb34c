#!/usr/bin/env bash
# Video load of a running gateway over loopback UDP: SOURCES cameras and VIEWERS viewers in one
# room (tests/src/bin/videoload.rs), each an authenticated call with H.264; the cameras send
# pictures encoded beforehand at real speed. Builds release binaries, starts a gateway with
# SQLite in a temporary directory and the room's canvas at SIZE and FPS, and prints the gateway's
# CPU (its video threads apart), the packets each viewer got, and the glass-to-glass delay.
#   bash ops/videoload.sh [SOURCES] [VIEWERS] [SECONDS] [SIZE] [FPS]
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
sources=${1:-4}
viewers=${2:-10}
seconds=${3:-15}
size=${4:-1280x720}
fps=${5:-30}
users=$((sources + viewers))

load_prepare videoload
cat >> "$work/gateway.toml" <<TOML
[video]
width = ${size%x*}
height = ${size#*x}
frame_rate = $fps
# Cameras only: the viewers (who send none) have no tiles.
name_tiles = false
[conference]
max_participants = 100000
[limits]
requests_per_source = 0
TOML
load_accounts "$gateway" "$work" "$users" load load-password 1000
load_start "$gateway" "$work" "$port"
echo "== $sources cameras, $viewers viewers, canvas $size at $fps fps, $(nproc) cores, $seconds s measured"
"$bin/videoload" --gateway "127.0.0.1:$port" --room 1000 --users "$users" --sources "$sources" \
    --viewers "$viewers" --size "$size" --fps "$fps" --seconds "$seconds" --pid "$gw"
echo "== gateway warnings: $(grep -c . "$work/gateway.log" || true) lines"
grep -m 5 "WARN" "$work/gateway.log" || true
