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
