#!/usr/bin/env bash
# Runs the gateway with its default configuration (SQLite file gateway.db in the current
# directory; SIP on 0.0.0.0:5060, HTTP on 127.0.0.1:8080). Installs what the build needs when it
# is missing — libopus and libvpx (Debian/Ubuntu: libopus-dev, libvpx-dev), the system libraries
# the build links (Opus; VP8), and nasm, without which the bundled H.264 codec builds without its
# assembly and runs about three times slower — then builds in release mode and starts. Arguments are passed on: bash ops/run.sh --config /etc/gateway/gateway.toml
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! pkg-config --exists opus vpx 2>/dev/null || ! command -v nasm >/dev/null; then
    echo "installing libopus-dev, libvpx-dev, pkg-config and nasm (the Opus and VP8 libraries the gateway links; the H.264 codec's assembler)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopus-dev libvpx-dev pkg-config nasm
fi

manifest="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Cargo.toml"
exec cargo run --release --manifest-path "$manifest" -p gateway -- run "$@"
