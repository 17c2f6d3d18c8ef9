#!/usr/bin/env bash
# Builds the libFuzzer targets (every module instrumented: -sanitize=fuzzer,address) and runs one for a given
# time on its committed seed corpus plus a scratch corpus, e.g.
#   Tests/Fuzz/run.sh FuzzSafetensors 600
# Findings (crash-*, leak-*, timeout-*, oom-*) land in Tests/Fuzz/findings/<target>/; the last lines of
# libFuzzer's log (executions, coverage) are printed. Leak detection is off: Foundation's NSRegularExpression
# (ICU) allocations are reported as leaked by LeakSanitizer whatever we do with them; our own growth is bounded
# and -rss_limit_mb / -malloc_limit_mb catch any real one.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?target: FuzzSafetensors FuzzIndex FuzzConfig FuzzPackFile FuzzReferenceDump FuzzShardSet FuzzConfigValidation}
seconds=${2:-600}
# FUZZ_NO_BUILD=1 skips the build (several targets running at once must not rebuild the same tree).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    swift build -c debug -Xswiftc -sanitize=fuzzer,address --product "$target" 2>&1 | grep -v "Cannot export local symbol" | tail -2
fi
work=${FUZZ_WORK:-/tmp/k2pack-fuzz}/$target
mkdir -p "$work" "findings/$target"
ASAN_OPTIONS=detect_leaks=0 ".build/debug/$target" "$work" "corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -detect_leaks=0 -artifact_prefix="findings/$target/" -print_final_stats=1 2>&1 | tee "$work.log" | tail -25
