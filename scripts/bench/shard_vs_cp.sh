#!/usr/bin/env bash
# Times `cp` of a checkpoint's shards and `k2pack shard` (then `shard --merge`) of the same checkpoint, each from a
# cold page cache and each ending with `sync`, in one run. Prints bytes written, seconds, GB/s and peak RSS.
# Usage: scripts/bench/shard_vs_cp.sh CHECKPOINT SCRATCH [shard options, default: --gpus 8 --tp 8]
set -euo pipefail
in=$1; scratch=$2; shift 2
opts=("$@"); [ ${#opts[@]} -eq 0 ] && opts=(--gpus 8 --tp 8)
k2pack=${K2PACK:-.build/release/k2pack}
cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches: warm runs)" >&2; }
measure() {  # label, output path, command...
  local label=$1 out=$2; shift 2
  cold
  local t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$scratch/rss" "$@" && sync
  local t1=$(date +%s.%N)
  local bytes=$(du -sb --apparent-size "$out" | cut -f1)
  awk -v l="$label" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v rss="$(cat "$scratch/rss")" \
    'BEGIN { s = t1 - t0; printf "%-28s %15.0f bytes  %7.2f s  %6.3f GB/s  peak RSS %d MB\n", l, b, s, b / s / 1e9, rss / 1024 }'
}
rm -rf "$scratch/cp" "$scratch/shards" "$scratch/merged"; mkdir -p "$scratch/cp"
measure "cp + sync" "$scratch/cp" cp "$in"/*.safetensors "$scratch/cp/"
rm -rf "$scratch/cp"
measure "k2pack shard ${opts[*]}" "$scratch/shards" "$k2pack" shard --quiet "$in" "$scratch/shards" "${opts[@]}"
measure "k2pack shard --merge" "$scratch/merged" "$k2pack" shard --merge --quiet "$scratch/shards" "$scratch/merged"
for f in "$in"/*.safetensors; do cmp "$f" "$scratch/merged/$(basename "$f")"; done && echo "merged shards are identical to the input"
