#!/usr/bin/env bash
# Load test of a running gateway over loopback UDP: authenticated REGISTERs per second, then
# whole calls per second into a conference room (see tests/src/bin/sipload.rs). Builds release
# binaries, starts a gateway with SQLite in a temporary directory, creates the users and room,
# runs each load for SECONDS (default 10) over USERS accounts (default 10,000), prints the
# figures, and stops the gateway. GATEWAY_DATABASE_URL=postgres://… runs it on PostgreSQL.
#   [GATEWAY=path] bash ops/loadtest.sh [SECONDS] [USERS]
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
seconds=${1:-10}
users=${2:-10000}

cargo build --release -p gateway -p e2e --bin gateway --bin sipload
bin=target/release
# GATEWAY=/path/to/gateway measures another build (an earlier commit's, side by side).
gateway=${GATEWAY:-$bin/gateway}
work=$(mktemp -d /tmp/gateway-load.XXXXXX)
trap 'kill "$gw" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

port=$((20000 + RANDOM % 20000))
load_config "$work" "$port"
cat >> "$work/gateway.toml" <<TOML
[rtp]
address = "127.0.0.1"
port_min = 42000
port_max = 49999
# One generator on one address stands for thousands of phones: no per-source rate. Every
# other limit is the default.
[limits]
requests_per_source = 0
TOML
load_accounts "$gateway" "$work" "$users" load load-password 1000
load_start "$gateway" "$work" "$port"

echo "== REGISTER with digest auth, $users users, $seconds s"
"$bin/sipload" register --gateway "127.0.0.1:$port" --users "$users" --seconds "$seconds" --window 200
echo "== calls into room 1000 (each a conference leg for its short life), $seconds s"
"$bin/sipload" call --gateway "127.0.0.1:$port" --users "$users" --seconds "$seconds" --window 100
echo "== gateway CPU time (user+system, seconds): $(ps -o times= -p "$gw")"
# Both lists print a header line.
echo "== bindings in the database: $(($("$gateway" --config "$work/gateway.toml" registrations | wc -l) - 1))"
echo "== call records in the database: $(($("$gateway" --config "$work/gateway.toml" calls --limit 1000000000 | wc -l) - 1))"
