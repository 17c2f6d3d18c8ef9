#!/usr/bin/env bash
# Installs the C libraries k2pack links (Debian packages), only when pkg-config does not already find them.
# Used by scripts/try.sh (the README's first command) and by .ci/run. Needs root, or sudo.
set -euo pipefail
packages=(pkg-config libzstd-dev libopenblas-dev libhdf5-dev libssl-dev)
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libzstd openblas hdf5 libcrypto 2>/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: pkg-config does not find libzstd, openblas, hdf5 and libcrypto, and there is no apt-get here;" >&2
    echo "setup: install their development packages (${packages[*]} on Debian/Ubuntu) and run this again." >&2
    exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then run=(sudo); else
        echo "setup: installing ${packages[*]} needs root (no sudo here); run this script as root." >&2
        exit 1
    fi
fi
echo "setup: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq
"${run[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
pkg-config --exists libzstd openblas hdf5 libcrypto || { echo "setup: installed, but pkg-config still misses a library" >&2; exit 1; }
