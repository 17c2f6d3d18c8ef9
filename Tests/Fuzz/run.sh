#!/usr/bin/env bash
# Builds the libFuzzer targets (every module instrumented: -sanitize=fuzzer,address) and runs one for a given
# time on its committed seed corpus plus a scratch corpus, e.g.
#   Tests/Fuzz/run.sh FuzzSafetensors 600
# Arguments after the seconds go to libFuzzer as they are (e.g. -print_coverage=1).
# Findings (crash-*, leak-*, timeout-*, oom-*) land in Tests/Fuzz/findings/<target>/; the last lines of
# libFuzzer's log (executions, coverage) are printed. Leak detection is off: Foundation's NSRegularExpression
# (ICU) allocations are reported as leaked by LeakSanitizer whatever we do with them; our own growth is bounded
# and -rss_limit_mb / -malloc_limit_mb catch any real one.
set -euo pipefail
cd "$(dirname "$0")"
# The targets are the folders of Sources/ (FuzzSupport is the shared library), so a new one is listed as added.
targets=$(cd Sources && ls -d Fuzz* | grep -vx FuzzSupport | tr '\n' ' ')
usage="usage: Tests/Fuzz/run.sh TARGET [SECONDS [LIBFUZZER-FLAGS...]]   (TARGET: ${targets% }; SECONDS: 600 unless given)"
target=${1:-}
seconds=${2:-600}
if [ -z "$target" ] || [ "$target" = FuzzSupport ] || [ ! -d "Sources/$target" ] || [[ ! "$seconds" =~ ^[0-9]+$ ]]; then
    echo "$usage" >&2
    exit 64
fi
# FUZZ_NO_BUILD=1 skips the build (several targets running at once must not rebuild the same tree).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    swift build -c debug -Xswiftc -sanitize=fuzzer,address --product "$target" 2>&1 | { grep -v "Cannot export local symbol" || true; } | tail -2
fi
work=${FUZZ_WORK:-/tmp/k2pack-fuzz}/$target
mkdir -p "$work" "findings/$target"
ASAN_OPTIONS=detect_leaks=0 ".build/debug/$target" "$work" "corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -detect_leaks=0 -artifact_prefix="findings/$target/" -print_final_stats=1 "${@:3}" 2>&1 | tee "$work.log" | tail -25
