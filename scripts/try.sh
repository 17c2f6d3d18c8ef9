#!/usr/bin/env bash
# The README's first command: set up a fresh machine (Debian packages, only if missing), build, and run the main
# job on the shipped fixture: verify, inspect, and the forward pass checked layer by layer against its reference.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
k2pack=.build/release/k2pack
$k2pack verify Fixtures/k25-tiny
$k2pack inspect Fixtures/k25-tiny
$k2pack parity Fixtures/k25-tiny --reference Fixtures/references/k25-tiny.h5:/exact
