#!/usr/bin/env bash
# verify throughput against `cat` of the same shard files, in one run, cold and warm page cache.
# Usage: scripts/bench/verify_vs_cat.sh CHECKPOINT_DIR [K2PACK]
# Cold runs need root (they write /proc/sys/vm/drop_caches); without it only warm runs are measured.
set -euo pipefail
dir=$1
k2pack=${2:-.build/release/k2pack}
files=("$dir"/*.safetensors)
bytes=$(du -cb --apparent-size "${files[@]}" | tail -1 | cut -f1)
echo "files: ${#files[@]}, bytes: $bytes"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; }
can_drop=0
if drop; then can_drop=1; fi

timeit() {  # prints seconds
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

report() {  # label seconds
    printf "%-28s %7.2f s  %6.2f GB/s\n" "$1" "$2" "$(echo "$bytes / $2 / 1000000000" | bc -l)"
}

if [ $can_drop = 1 ]; then
    drop; t=$(timeit cat "${files[@]}"); report "cat (cold)" "$t"
    drop; t=$(timeit "$k2pack" verify --quiet "$dir"); report "k2pack verify (cold)" "$t"
fi
cat "${files[@]}" > /dev/null  # warm the cache
for i in 1 2 3; do
    t=$(timeit cat "${files[@]}"); report "cat (warm) #$i" "$t"
    t=$(timeit "$k2pack" verify --quiet "$dir"); report "k2pack verify (warm) #$i" "$t"
done
