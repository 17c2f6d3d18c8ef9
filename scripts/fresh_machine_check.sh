#!/usr/bin/env bash
# Checks the README's two commands on a fresh machine: a clean Debian 12 chroot holding only the Swift toolchain
# (bind-mounted from /opt/swift, with /opt/swift-packages for package mirrors where the host has one) and the
# packages Swift itself needs — none of k2pack's C libraries, no pkg-config files for them. It clones this
# repository's HEAD inside and runs `scripts/try.sh`, then `swift test`. Needs root and debootstrap
# (apt-get install debootstrap). Usage: scripts/fresh_machine_check.sh [CHROOT_DIR]   (default /tmp/k2pack-fresh)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/tmp/k2pack-fresh}
swift_dir=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
[ -d "$root/etc" ] || debootstrap --variant=minbase bookworm "$root"
cp /etc/resolv.conf "$root/etc/"
mkdir -p "$root/opt/swift" "$root/src"
cleanup() { for m in src opt/swift-packages opt/swift dev proc; do umount "$root/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount --bind /proc "$root/proc"; mount --bind /dev "$root/dev"
mount --bind "$swift_dir" "$root/opt/swift"; mount --bind "$repo" "$root/src"
if [ -d /opt/swift-packages ]; then
    mkdir -p "$root/opt/swift-packages"; mount --bind /opt/swift-packages "$root/opt/swift-packages"
    printf '[url "/opt/swift-packages/"]\n\tinsteadOf = https://github.com/\n' > "$root/etc/gitconfig"
fi
printf '[safe]\n\tdirectory = *\n' >> "$root/etc/gitconfig"
chroot "$root" bash -c 'export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# What the Swift toolchain itself needs on Debian 12 (swift.org), nothing of ours:
apt-get install -y -qq binutils git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev libncurses6 \
    libpython3-dev libsqlite3-0 libstdc++-12-dev libxml2-dev libz3-dev tzdata zlib1g-dev unzip ca-certificates >/dev/null
apt-get purge -y -qq libzstd-dev libopenblas-dev libhdf5-dev libssl-dev >/dev/null 2>&1 || true
apt-get autoremove -y -qq >/dev/null 2>&1 || true'
chroot "$root" bash -lc 'set -e; export PATH=/opt/swift/usr/bin:$PATH
cd /root && rm -rf k2pack && git clone -q /src k2pack && cd k2pack
echo "--- README command 1"; scripts/try.sh
echo "--- README command 2"; swift test'
echo "fresh machine check: both README commands passed"
