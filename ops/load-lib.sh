# What the load scripts share (sourced): a gateway on loopback with SQLite in a temporary
# directory. Each script adds its own [rtp], [conference], [limits], … tables.

# load_config WORK PORT: the [sip], [http], [database] and [log] tables, SIP on PORT (UDP only)
# and HTTP on PORT + 1, into WORK/gateway.toml; the script appends the rest.
load_config() {
    cat > "$1/gateway.toml" <<TOML
[sip]
udp = ["127.0.0.1:$2"]
tcp = []
[http]
listen = "127.0.0.1:$(($2 + 1))"
[database]
url = "sqlite://$1/gateway.db"
[log]
level = "warn"
TOML
}

# load_accounts GATEWAY WORK USERS PREFIX PASSWORD ROOM…: the rooms, and USERS users PREFIX0…
# with PASSWORD, through the gateway's CLI.
load_accounts() {
    local gateway=$1 work=$2 users=$3 prefix=$4 password=$5
    shift 5
    for room in "$@"; do "$gateway" --config "$work/gateway.toml" room add --number "$room" > /dev/null; done
    for i in $(seq 0 $((users - 1))); do echo "$prefix$i $password"; done \
        | "$gateway" --config "$work/gateway.toml" user import - > /dev/null
}

# load_start GATEWAY WORK PORT: runs the gateway (its pid in $gw, its log in WORK/gateway.log)
# and waits until its /healthz answers.
load_start() {
    "$1" --config "$2/gateway.toml" run 2> "$2/gateway.log" &
    gw=$!
    for _ in $(seq 100); do
        curl -sf "127.0.0.1:$(($3 + 1))/healthz" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the gateway did not start; its log:" >&2
    cat "$2/gateway.log" >&2
    return 1
}

# load_prepare GENERATOR: builds the release gateway and the generator binary GENERATOR, and
# sets what a media load run needs: $bin, $gateway (GATEWAY=/path measures another build, an
# earlier commit's, side by side), $work (removed at exit, the gateway stopped), $port, a raised
# open-file limit (two sockets a leg on each side), and WORK/gateway.toml with SIP, HTTP, the
# database and an [rtp] table on loopback over 32000-63999, for the script to add keys to.
load_prepare() {
    cargo build --release -p gateway -p e2e --bin gateway --bin "$1"
    bin=target/release
    gateway=${GATEWAY:-$bin/gateway}
    work=$(mktemp -d "/tmp/gateway-$1.XXXXXX")
    trap 'kill "$gw" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    ulimit -n "$(ulimit -Hn)"
    port=$((20000 + RANDOM % 10000))
    load_config "$work" "$port"
    cat >> "$work/gateway.toml" <<TOML
[rtp]
address = "127.0.0.1"
port_min = 32000
port_max = 63999
TOML
}
