#!/usr/bin/env bash
# One EP rank's routed-expert weights into memory from Python: the k2pack reader on a rank folder against
# safetensors get_slice on the Hugging Face shards, 3 rounds from a cold page cache and 3 warm, the methods
# alternating within each round. Needs numpy, safetensors and ml_dtypes; see docs/BENCHMARKS.md.
#
#   scripts/bench/experts_python.sh HF_FOLDER SET_FOLDER [RANK]      # SET_FOLDER from `k2pack shard --ep N`
#
# Cold: by default only the files the two readers open are evicted (POSIX_FADV_DONTNEED on the rank's .k2p files
# and the checkpoint's shards), which leaves the rest of a shared machine's page cache alone; COLD=drop empties
# the whole page cache instead (`sync; echo 3 > /proc/sys/vm/drop_caches`, root).
set -euo pipefail
hf=$1 set=$2 rank=${3:-0}
here=$(dirname "$0")
py=${PYTHON:-python3}
folder=$set/rank-$(printf %04d "$rank")
range=$("$py" -c "import sys; sys.path.insert(0, '$here/../../python'); import k2pack_reader as k2; a, b = k2.open_pack('$folder').expert_range; print(a, b)")
read -r first end <<<"$range"
cold() {
    if [ "${COLD:-files}" = drop ]; then
        sync; echo 3 > /proc/sys/vm/drop_caches
    else
        "$py" -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$folder"/*.k2p "$hf"/*.safetensors
    fi
}
run() {
    case $1 in
        st) "$py" "$here/experts_python.py" safetensors "$hf" --first "$first" --end "$end" ;;
        view) "$py" "$here/experts_python.py" k2pack "$folder" ;;
        *) "$py" "$here/experts_python.py" k2pack "$folder" "--$1" ;;
    esac
}

echo "rank $rank: experts $first..<$end; cold = ${COLD:-files}"
"$py" "$here/experts_python.py" check "$folder" "$hf"
for round in 1 2 3; do
    for method in view copy st verify; do cold; echo -n "cold $round  "; run $method; done
done
for method in view copy st verify; do run $method >/dev/null; done
for round in 1 2 3; do
    for method in view copy st verify; do echo -n "warm $round  "; run $method; done
done
