#!/usr/bin/env bash
# Soak test (not in CI): PARTICIPANTS scripted phones (default 200) keep joining and leaving
# room 1000 for MINUTES (default 30), each call authenticated and streaming PCMU from its own
# socket, while the gateway's resident memory and open descriptors are read from /proc every
# ten seconds (tests/src/bin/soak.rs). Builds release binaries and runs a gateway with SQLite
# in a temporary directory.
#   bash ops/soak.sh [MINUTES] [PARTICIPANTS]
# PROFILE=dev uses the binaries `cargo build` made (no release build; slower media code).
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
minutes=${1:-30}
users=${2:-200}

if [ "${PROFILE:-release}" = dev ]; then
    cargo build -p gateway -p e2e --bin gateway --bin soak
    bin=target/debug
else
    cargo build --release -p gateway -p e2e --bin gateway --bin soak
    bin=target/release
fi
work=$(mktemp -d /tmp/gateway-soak.XXXXXX)
# The gateway's log outlives the run, for a look at what it warned about.
trap 'kill "$gw" 2>/dev/null || true; wait 2>/dev/null || true; cp "$work/gateway.log" /tmp/gateway-soak-last.log 2>/dev/null || true; rm -rf "$work"' EXIT

port=$((20000 + RANDOM % 20000))
load_config "$work" "$port"
cat >> "$work/gateway.toml" <<TOML
[rtp]
address = "127.0.0.1"
port_min = 42000
port_max = 49999
[conference]
max_participants = 1000
# Every scripted phone calls from one address.
[limits]
requests_per_source = 0
auth_failures_per_source = 0
TOML
load_accounts "$bin/gateway" "$work" "$users" soak soak-password 1000
load_start "$bin/gateway" "$work" "$port"
echo "== $users participants joining and leaving room 1000 for $minutes minutes"
"$bin/soak" --gateway "127.0.0.1:$port" --users "$users" --minutes "$minutes" --pid "$gw"
echo "== gateway CPU time (user+system): $(ps -o times= -p "$gw") s; warnings logged: $(grep -c WARN "$work/gateway.log" || true)"
echo "== warnings, by message"
grep -E 'WARN|ERROR' "$work/gateway.log" | sed -E 's/^[^ ]+ +//; s/ (participant|remote|src|leg|call_id|user)=[^ ]+//g' | cut -c1-120 \
    | sort | uniq -c | sort -rn | head -15 || true
