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
cat > "$work/gateway.toml" <<TOML
[sip]
udp = ["127.0.0.1:$port"]
tcp = []
[http]
listen = "127.0.0.1:$((port + 1))"
[rtp]
address = "127.0.0.1"
port_min = 42000
port_max = 49999
[conference]
max_participants = 1000
[database]
url = "sqlite://$work/gateway.db"
[log]
level = "warn"
# Every scripted phone calls from one address.
[limits]
requests_per_source = 0
auth_failures_per_source = 0
TOML
gwcli() { "$bin/gateway" --config "$work/gateway.toml" "$@" > /dev/null; }
gwcli room add --number 1000
for i in $(seq 0 $((users - 1))); do gwcli user add "soak$i" --password soak-password; done

"$bin/gateway" --config "$work/gateway.toml" run 2> "$work/gateway.log" &
gw=$!
for _ in $(seq 100); do
    curl -sf "127.0.0.1:$((port + 1))/healthz" > /dev/null 2>&1 && break
    sleep 0.1
done
echo "== $users participants joining and leaving room 1000 for $minutes minutes"
"$bin/soak" --gateway "127.0.0.1:$port" --users "$users" --minutes "$minutes" --pid "$gw"
echo "== gateway CPU time (user+system): $(ps -o times= -p "$gw") s; warnings logged: $(grep -c WARN "$work/gateway.log" || true)"
echo "== warnings, by message"
grep -E 'WARN|ERROR' "$work/gateway.log" | sed -E 's/^[^ ]+ +//; s/ (participant|remote|src|leg|call_id|user)=[^ ]+//g' | cut -c1-120 \
    | sort | uniq -c | sort -rn | head -15 || true
