#!/usr/bin/env bash
# One EP rank's routed-expert weights into memory from Python: the k2pack reader on a rank folder against
# safetensors get_slice on the Hugging Face shards, each from a cold page cache and then warm (3 runs each,
# alternating). Needs root (drop_caches), numpy, safetensors and ml_dtypes; see docs/BENCHMARKS.md.
#
#   scripts/bench/experts_python.sh HF_FOLDER SET_FOLDER [RANK]      # SET_FOLDER from `k2pack shard --ep N`
set -euo pipefail
hf=$1 set=$2 rank=${3:-0}
here=$(dirname "$0")
py=${PYTHON:-python3}
folder=$set/rank-$(printf %04d "$rank")
range=$("$py" -c "import sys; sys.path.insert(0, '$here/../../python'); import k2pack_reader as k2; a, b = k2.open_pack('$folder').expert_range; print(a, b)")
read -r first end <<<"$range"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
k2() { "$py" "$here/experts_python.py" k2pack "$folder" "$@"; }
st() { "$py" "$here/experts_python.py" safetensors "$hf" --first "$first" --end "$end"; }

echo "rank $rank: experts $first..<$end"
"$py" "$here/experts_python.py" check "$folder" "$hf"
echo "--- cold (page cache dropped before each)"
drop; echo -n "cold  "; k2
drop; echo -n "cold  "; k2 --copy
drop; echo -n "cold  "; st
drop; echo -n "cold  "; k2 --verify
echo "--- warm"
k2 >/dev/null; st >/dev/null
for i in 1 2 3; do
    echo -n "warm  "; k2
    echo -n "warm  "; k2 --copy
    echo -n "warm  "; st
    echo -n "warm  "; k2 --verify
done
