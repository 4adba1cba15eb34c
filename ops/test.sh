#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs the test peers and a PostgreSQL
# server, starts PostgreSQL on 127.0.0.1 in a temporary directory, builds once (dev profile) and
# runs the whole workspace's tests against SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Test peers and servers, from Debian's packages (procps: `kill`, which tests use to stop and
# freeze processes; chromium with its WebDriver: the join page's tests; nasm: the bundled H.264
# codec's assembly, without which it builds slow; libvpx-dev: VP8; baresip-ffmpeg: H.264 and
# video files for the video phones).
PACKAGES=(libopus-dev libvpx-dev pkg-config nasm procps iproute2 sipsak baresip-core baresip-ffmpeg kamailio ffmpeg
    postgresql postgresql-client
    chromium chromium-driver)
command -v python3 >/dev/null || PACKAGES+=(python3 python3-pip)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# pjsua2 (a pjsip phone from Python; it sends DTMF as SIP INFO, which baresip cannot), from
# PyPI into the Python the tests run.
if ! python3 -c "import pjsua2" 2>/dev/null; then
    log "installing pjsua2-python"
    # Debian's own Python refuses pip installs outside a venv unless told (PEP 668).
    python3 -m pip install --quiet --disable-pip-version-check pjsua2-python \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages pjsua2-python
fi

# A private PostgreSQL instance for the storage tests, stopped on exit.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${GATEWAY_TEST_PGPORT:-54329}
PGDIR=$(mktemp -d /tmp/gateway-pg.XXXXXX)
pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
stop_pg() { pg_as_owner "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDIR"; }
trap stop_pg EXIT
log "starting PostgreSQL on 127.0.0.1:$PGPORT"
pg_as_owner "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >/dev/null
pg_as_owner "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export GATEWAY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export GATEWAY_REQUIRE_POSTGRES=1

# rustfmt and clippy come with the machine's toolchain (rustup components cannot be fetched here).
for tool in rustfmt cargo-clippy; do
    command -v "$tool" >/dev/null || { echo "the Rust toolchain lacks $tool" >&2; exit 1; }
done
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

log "building"
cargo build --workspace --all-targets --locked

log "linting (protocol and media cores may not read clocks or sleep: see */clippy.toml)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "fuzz targets: build, and a short run of each (the SIP ones seeded with the torture messages)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
CORPUS=$(mktemp -d /tmp/gateway-fuzz.XXXXXX)
# crate, then its targets: a short run each keeps them building and catches shallow crashes;
# the long campaigns are run by hand (README, "Fuzzing").
fuzz() {
    local crate=$1 seed=$2
    shift 2
    (
        cd "$crate"
        cargo fuzz build -s none
        for target in "$@"; do
            mkdir -p "$CORPUS/$target"
            [ -n "$seed" ] && cp $seed "$CORPUS/$target/"
            cargo fuzz run -s none "$target" "$CORPUS/$target" -- -runs=20000 -max_total_time=30 -max_len=4096 >"$CORPUS/$target.log" 2>&1 \
                || { tail -40 "$CORPUS/$target.log"; exit 1; }
        done
    )
}
fuzz sip-stack "tests/torture/*.sip" sip_message stream_framing sdp digest name_addr
fuzz mixer "" receive_path conference source_guard video_depacketizers
fuzz gateway "" join_message config srtp
rm -rf "$CORPUS"

log "testing"
cargo test --workspace --doc --locked
cargo nextest run --workspace --locked --no-fail-fast
