#!/usr/bin/env bash
# Browser legs on one gateway: starts a release gateway (SQLite, temporary directory) with
# room 1000, then joins webrtc-rs clients through its WebSocket as the join page does (see
# tests/src/bin/browserload.rs) at each size given (default 10 50 100), three of them talking.
# Prints join-to-first-audio times and the gateway's CPU per browser leg.
#   bash ops/browserload.sh [SECONDS] [SIZES…]
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
seconds=${1:-15}
shift || true
sizes=("${@:-10 50 100}")
read -r -a sizes <<< "${sizes[*]}"

cargo build --release -p gateway -p e2e --bin gateway --bin browserload
bin=target/release
work=$(mktemp -d /tmp/gateway-browsers.XXXXXX)
trap 'kill "$gw" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

port=$((20000 + RANDOM % 20000))
load_config "$work" "$port"
cat >> "$work/gateway.toml" <<TOML
[rtp]
address = "127.0.0.1"
port_min = 42000
port_max = 49999
[conference]
max_participants = 1000
[webrtc]
addresses = ["127.0.0.1"]
TOML
load_accounts "$bin/gateway" "$work" 0 - - 1000

for size in "${sizes[@]}"; do
    load_start "$bin/gateway" "$work" "$port"
    echo "== $size browsers in room 1000, $seconds s measured"
    "$bin/browserload" --http "127.0.0.1:$((port + 1))" --room 1000 --browsers "$size" --talkers 3 \
        --seconds "$seconds" --pid "$gw"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
done
