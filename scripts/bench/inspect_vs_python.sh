#!/usr/bin/env bash
# `k2pack inspect` against a user's Python listing of the same headers, side by side in one hyperfine run
# (warm page cache: hyperfine's warm-up runs read everything once).
# Usage: scripts/bench/inspect_vs_python.sh CHECKPOINT_DIR [K2PACK] [PYTHON]
#   K2PACK: a release build (default .build/release/k2pack); PYTHON: an interpreter with safetensors and numpy
#   (and torch for the third row; default /work/venv/bin/python). Extra hyperfine options via HYPERFINE_OPTS.
# Rows: k2pack inspect; safe_open(f, "np") without torch (scripts/bench/inspect_python_np.py, the baseline of
# issue 20); safe_open(f, "pt") importing torch (scripts/bench/inspect_python.py, the earlier, torch baseline;
# left out when PYTHON cannot import torch).
set -euo pipefail
dir=$1
k2pack=${2:-.build/release/k2pack}
python=${3:-/work/venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
rows=(-n "k2pack inspect" "$k2pack inspect $dir" -n "python safe_open np (no torch)" "$python $here/inspect_python_np.py $dir")
# The torch row only where torch is installed (a failing command would stop hyperfine).
if "$python" -c "import torch" 2>/dev/null; then
    rows+=(-n "python safe_open pt (imports torch)" "$python $here/inspect_python.py $dir")
else
    echo "torch is not installed for $python: no torch row"
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
hyperfine -N -w 3 -r "${RUNS:-15}" ${HYPERFINE_OPTS:-} "${rows[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
