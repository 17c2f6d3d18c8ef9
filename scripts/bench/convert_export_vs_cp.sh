#!/usr/bin/env bash
# Times `cp -r` of a checkpoint, `k2pack convert` of it, `k2pack verify` of the conversion (which compares every
# stored tensor with its source) and `k2pack export` of the conversion, each from a cold page cache and each
# ending with `sync`, in one run. Prints bytes written, seconds, GB/s, CPU seconds, bytes read from disk and peak RSS
# (`/usr/bin/time -v`). The exported shards are checked against SHA-256 sums of the input taken before the run.
# Usage: scripts/bench/convert_export_vs_cp.sh CHECKPOINT SCRATCH
# DROP_INPUT=1 deletes CHECKPOINT after verify, before export (keeps the run's disk use at two copies, not three).
set -euo pipefail
in=$1; scratch=$2
k2pack=${K2PACK:-.build/release/k2pack}
cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop caches: warm runs)" >&2; }
measure() {  # label, output path ("-" when nothing is written), command...
  local label=$1 out=$2; shift 2
  cold
  local t0=$(date +%s.%N)
  /usr/bin/time -v -o "$scratch/time-v" "$@" >/dev/null || { echo "$label: failed (exit $?)" >&2; exit 1; }
  sync
  local t1=$(date +%s.%N)
  local bytes=0; [ "$out" != - ] && bytes=$(du -sb --apparent-size "$out" | cut -f1)
  local rss=$(awk -F': ' '/Maximum resident/ { print $2 }' "$scratch/time-v")
  local cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { print u + s }' "$scratch/time-v")
  local readgb=$(awk -F': ' '/File system inputs/ { printf "%.2f", $2 * 512 / 1e9 }' "$scratch/time-v")
  awk -v l="$label" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v rss="$rss" -v cpu="$cpu" -v rd="$readgb" \
    'BEGIN { s = t1 - t0; printf "%-22s %13.0f bytes  %7.2f s  %6.3f GB/s  cpu %7.2f s  read %6.2f GB  peak RSS %d MB\n", l, b, s, b / s / 1e9, cpu, rd, rss / 1024 }'
}
mkdir -p "$scratch"; rm -rf "$scratch/cp" "$scratch/conv" "$scratch/export"
(cd "$in" && sha256sum ./*.safetensors) > "$scratch/input.sha256"
measure "cp -r + sync" "$scratch/cp" cp -r "$in" "$scratch/cp"
rm -rf "$scratch/cp"
measure "k2pack convert" "$scratch/conv" "$k2pack" convert --quiet "$in" "$scratch/conv"
measure "k2pack verify (conv)" - "$k2pack" verify "$scratch/conv"
[ "${DROP_INPUT:-0}" = 1 ] && rm -rf "$in"
measure "k2pack export" "$scratch/export" "$k2pack" export --quiet "$scratch/conv" "$scratch/export"
(cd "$scratch/export" && sha256sum --quiet -c "$scratch/input.sha256") && echo "exported shards are identical to the input"
