#!/usr/bin/env bash
# Authenticated REGISTERs per second, the gateway and Kamailio side by side: the same generator
# (tests/src/bin/sipload.rs), the same accounts, the same machine, run alternately ROUNDS
# times so that drift in the machine's speed falls on both. Each side stores its bindings in
# SQLite before the 200 (the gateway always; Kamailio with usrloc's write-through db_mode 1)
# and checks digest nonce counts against replay (Kamailio: qop=auth with nonce_count).
# Kamailio runs as its packaged default config does: 8 UDP children. The CPU of each (all of
# Kamailio's processes) is read from /proc over each run.
#   bash ops/register-vs-kamailio.sh [SECONDS=10] [USERS=10000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/load-lib.sh
seconds=${1:-10}
users=${2:-10000}
rounds=${3:-3}
schema=/usr/share/kamailio/db_sqlite
command -v kamailio > /dev/null && [ -f "$schema/usrloc-create.sql" ] || {
    echo "needs kamailio, kamailio-sqlite-modules and sqlite3 (apt-get install kamailio kamailio-sqlite-modules sqlite3)" >&2
    exit 1
}

cargo build --release -p gateway -p e2e --bin gateway --bin sipload
bin=target/release
work=$(mktemp -d /tmp/register-vs-kamailio.XXXXXX)
trap 'kill "$gw" 2>/dev/null || true; for f in "$work"/*.pid; do kill "$(cat "$f")" 2>/dev/null; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# The gateway: SQLite, every limit at its default but the per-source rate.
port=$((20000 + RANDOM % 20000))
load_config "$work" "$port"
cat >> "$work/gateway.toml" <<TOML
[limits]
requests_per_source = 0
TOML
load_accounts "$bin/gateway" "$work" "$users" load load-password
load_start "$bin/gateway" "$work" "$port"

# Kamailio: its own SQLite schema, the same accounts with their HA1 in realm "gateway".
db="$work/kamailio.db"
cat "$schema/standard-create.sql" "$schema/auth_db-create.sql" "$schema/usrloc-create.sql" | sqlite3 "$db"
python3 - "$users" <<'PY' | sqlite3 "$db"
import hashlib, sys
print("BEGIN;")
for i in range(int(sys.argv[1])):
    ha1 = hashlib.md5(f"load{i}:gateway:load-password".encode()).hexdigest()
    print(f"INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('load{i}', 'gateway', '', '{ha1}', '');")
print("COMMIT;")
PY
sqlite3 "$db" "PRAGMA journal_mode = WAL;" > /dev/null
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# start_kamailio NAME PORT DB_MODE: a Kamailio whose usrloc keeps bindings in memory only
# (db_mode 0) or writes each through to the database before the 200 (1). Its pids in
# $kamailio_NAME.
start_kamailio() {
    local name=$1 kport=$2 mode=$3
    cat > "$work/$name.cfg" <<CFG
#!KAMAILIO
debug=1
log_stderror=yes
children=8
disable_tcp=yes
listen=udp:127.0.0.1:$kport
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("db_sqlite", "db_set_journal_mode", "$db=WAL;")
modparam("auth", "qop", "auth")
modparam("auth", "nonce_count", 1)
modparam("auth", "secret", "$secret")
modparam("auth_db", "db_url", "sqlite://$db")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("auth_db", "load_credentials", "")
modparam("usrloc", "db_url", "sqlite://$db")
modparam("usrloc", "db_mode", $mode)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (\$rm != "REGISTER") { sl_send_reply("405", "Method Not Allowed"); exit; }
    # A phone registers its own account only (the To user is the authentication user).
    if (!auth_check("gateway", "subscriber", "1")) { auth_challenge("gateway", "1"); exit; }
    if (!save("location")) { sl_reply_error(); }
    exit;
}
CFG
    kamailio -f "$work/$name.cfg" -P "$work/$name.pid" -Y "$work" -E 2> "$work/$name.log" || {
        cat "$work/$name.log" >&2
        exit 1
    }
    for _ in $(seq 50); do [ -s "$work/$name.pid" ] && break; sleep 0.1; done
    sleep 1
    printf -v "kamailio_$name" '%s' "$(pgrep -f "$work/$name.cfg" | tr '\n' ' ')"
}
start_kamailio written $((port + 2)) 1
start_kamailio memory $((port + 3)) 0

# ticks PIDS…: user + system CPU of the processes, in clock ticks.
ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2> /dev/null) || continue
        stat=${stat##*) }
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)
# measure NAME PORT PIDS…: one run, the rate and the CPU per REGISTER.
measure() {
    local name=$1 target=$2
    shift 2
    local before after out rate
    before=$(ticks "$@")
    out=$("$bin/sipload" register --gateway "127.0.0.1:$target" --users "$users" --seconds "$seconds" --window 200)
    after=$(ticks "$@")
    rate=$(echo "$out" | sed -n 's/.* \([0-9]*\)\/s;.*/\1/p')
    echo "$name: $out"
    awk -v t=$((after - before)) -v hz="$hz" -v s="$seconds" -v r="$rate" -v n="$name" \
        'BEGIN { printf "%s: %.2f cores, %.0f µs of CPU per REGISTER\n", n, t / hz / s, r ? t / hz / (r * s) * 1e6 : 0 }'
}
for round in $(seq "$rounds"); do
    echo "== round $round, $users users, $seconds s each"
    measure gateway "$port" "$gw"
    # shellcheck disable=SC2086
    measure "kamailio, bindings written through" $((port + 2)) $kamailio_written
    # shellcheck disable=SC2086
    measure "kamailio, bindings in memory" $((port + 3)) $kamailio_memory
done
echo "== bindings in the gateway's database: $(($("$bin/gateway" --config "$work/gateway.toml" registrations | wc -l) - 1))"
echo "== bindings in Kamailio's database (written through): $(sqlite3 "$db" 'SELECT count(*) FROM location;')"
for name in written memory; do
    echo "== error lines in the log of kamailio ($name): $(grep -c ERROR "$work/$name.log" || true)"
done
echo "== the commonest in the first: $(grep ERROR "$work/written.log" | sed 's/^ *[0-9]*([0-9]*) //' | sort | uniq -c | sort -rn | head -1)"
