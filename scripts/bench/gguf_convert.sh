#!/bin/bash
# `k2pack convert CKPT OUT.gguf --to gguf` against `cp -r` of the same checkpoint, alternating, page cache dropped
# before every run (when allowed), both ending in `sync` (the writer fsyncs its parts). Prints wall time, peak RSS
# and bytes written per run; the ratio to quote is convert's output bytes/s over cp's bytes/s from the same round.
#
#   scripts/bench/gguf_convert.sh .build/release/k2pack /work/synth/k25-l2 /work/bench/gguf-convert [rounds]
set -euo pipefail
K2PACK=${1:?k2pack binary}
SRC=${2:?Hugging Face checkpoint folder}
OUT=${3:-/tmp/gguf-convert-bench}
ROUNDS=${4:-2}
mkdir -p "$OUT"
drop() { sync; if ! echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then echo "(page cache NOT dropped: not root)"; fi; }
bytes() { du -sb --apparent-size "$@" | awk '{s += $1} END {print s}'; }
extra=()
[ -e "$SRC/tiktoken.model" ] || extra+=(--no-tokenizer)
echo "input: $SRC, $(bytes "$SRC") bytes; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  rm -rf "$OUT/cp" "$OUT"/k25*.gguf "$OUT"/.k25.gguf.k2pack-resume.json; drop
  /usr/bin/time -f "round $r cp:      %e s wall, %U s user, %S s sys, %M KB peak RSS" bash -c "cp -r '$SRC' '$OUT/cp' && sync"
  echo "round $r cp:      $(bytes "$OUT/cp") bytes written"
  rm -rf "$OUT/cp"; drop
  /usr/bin/time -f "round $r convert: %e s wall, %U s user, %S s sys, %M KB peak RSS" \
    bash -c "'$K2PACK' convert '$SRC' '$OUT/k25.gguf' --to gguf ${extra[*]:-} --quiet > /dev/null && sync"
  echo "round $r convert: $(bytes "$OUT"/k25*.gguf) bytes written; load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
rm -rf "$OUT/cp" "$OUT"/k25*.gguf "$OUT"/.k25.gguf.k2pack-resume.json
