#!/usr/bin/env bash
# Before/after of two k2pack builds (issue 14's refactor) on inspect, convert and parity, each group in one run
# with the commands alternating (scripts/bench/ab_alternate.sh), next to the baselines the recorded rows use.
# Usage: scripts/bench/ab_issue14.sh OLD_K2PACK NEW_K2PACK SCRATCH [GROUP ...]   (groups: inspect parity small big)
# Inputs (made as docs/BENCHMARKS.md says):
#   /work/synth/k25-full   python3 scripts/make_synthetic_k25.py /work/synth/k25-full
#   /work/synth/k25-l2     python3 scripts/make_synthetic_k25.py /work/synth/k25-l2 --num-layers 2 --fill all
#   /work/bench/small      python scripts/bench/forward_python.py /work/bench/small --threads 2 --tokens 16
# ROUNDS_INSPECT, ROUNDS_PARITY, ROUNDS_SMALL, ROUNDS_BIG set the rounds per group; PYTHON the interpreter
# with torch and transformers (parity's baseline).
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); scratch=$3; shift 3
groups=${*:-inspect parity small big}
ab=$(dirname "$0")/ab_alternate.sh
py=${PYTHON:-python3}
full=${FULL:-/work/synth/k25-full}; l2=${L2:-/work/synth/k25-l2}; small=${SMALL:-/work/bench/small}
mkdir -p "$scratch"
cold="sync; echo 3 > /proc/sys/vm/drop_caches"
for g in $groups; do
  echo "== $g"
  case $g in
  inspect)
    AB_LOG=$scratch/inspect.rows "$ab" -n "${ROUNDS_INSPECT:-15}" -w 2 \
      "inspect (old)" "$old inspect $full" \
      "inspect (new)" "$new inspect $full" \
      "python safe_open np" "python3 scripts/bench/inspect_python_np.py $full" ;;
  parity)
    # every run's report (with forward_seconds) is appended to $scratch/parity-{old,new}.jsonl
    rm -f "$scratch"/parity-old.jsonl "$scratch"/parity-new.jsonl
    AB_LOG=$scratch/parity.rows "$ab" -n "${ROUNDS_PARITY:-10}" -w 1 \
      "parity 16 tok (old)" "$old parity $small --reference $small/ref.h5 --threads 2 --chained-only --json >> $scratch/parity-old.jsonl" \
      "parity 16 tok (new)" "$new parity $small --reference $small/ref.h5 --threads 2 --chained-only --json >> $scratch/parity-new.jsonl"
    for v in old new; do
      python3 - "$scratch/parity-$v.jsonl" "$v" <<'EOF'
import json, statistics, sys
text, dec, runs, i = open(sys.argv[1]).read(), json.JSONDecoder(), [], 0
while text[i:].strip():  # the reports are pretty-printed one after another
    i += len(text[i:]) - len(text[i:].lstrip())
    obj, i = dec.raw_decode(text, i); runs.append(obj)
f = [r["forward_seconds"] for r in runs]
ok = all(r["pass"] for r in runs)
print(f"forward_seconds ({sys.argv[2]}): median {statistics.median(f):.4f} s [{min(f):.4f}-{max(f):.4f}] over {len(f)} runs (incl. warm-up); all passed: {ok}")
EOF
    done ;;
  small)
    # warm page cache, the recorded `convert` row of the compressed-archive section; cp -r beside it
    AB_LOG=$scratch/small.rows "$ab" -n "${ROUNDS_SMALL:-10}" -w 1 -b "rm -rf $scratch/bp $scratch/bc" \
      "cp -r (small)" "cp -r $small $scratch/bc" \
      "convert small (old)" "$old convert --quiet $small $scratch/bp" \
      "convert small (new)" "$new convert --quiet $small $scratch/bp" ;;
  big)
    # cold page cache before each, each ending with sync: the recorded k25-l2 rows (convert_export_vs_cp.sh)
    AB_LOG=$scratch/big.rows "$ab" -n "${ROUNDS_BIG:-2}" -w 0 -b "rm -rf $scratch/cp $scratch/conv; $cold" \
      "cp -r + sync (k25-l2)" "cp -r $l2 $scratch/cp && sync" \
      "convert k25-l2 (old)" "$old convert --quiet $l2 $scratch/conv && sync" \
      "convert k25-l2 (new)" "$new convert --quiet $l2 $scratch/conv && sync"
    rm -rf "$scratch/cp" "$scratch/conv" ;;
  *) echo "unknown group $g" >&2; exit 2 ;;
  esac
done
