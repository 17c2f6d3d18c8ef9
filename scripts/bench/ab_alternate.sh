#!/usr/bin/env bash
# Runs two or more commands in turn (A B C A B C ...), so that every command sees the same machine load, and prints
# per command the median, min and max of wall, CPU (user + sys) and peak RSS, and the median of the per-round ratios
# to the first command (round by round, so a drift in the machine's speed cancels out of the ratio).
# Usage: scripts/bench/ab_alternate.sh [-n ROUNDS] [-w WARMUP_ROUNDS] [-b 'BEFORE'] LABEL 'COMMAND' LABEL 'COMMAND' ...
#   -b BEFORE runs (untimed, through sh -c) before every timed command, e.g. 'rm -rf /tmp/out; sync;
#      echo 3 > /proc/sys/vm/drop_caches' for cold-cache runs of a command that writes /tmp/out.
#   Every COMMAND runs through sh -c with its output thrown away; a failing command stops the script.
# Wall time is read from the monotonic clock around `/usr/bin/time -f`, which gives CPU and peak RSS.
# The rows of every run are kept in $AB_LOG (default: a temporary file, its path printed at the end).
set -euo pipefail
rounds=5; warmup=1; before=""
while getopts "n:w:b:" opt; do
  case $opt in n) rounds=$OPTARG ;; w) warmup=$OPTARG ;; b) before=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 4 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: $0 [-n N] [-w N] [-b CMD] LABEL CMD LABEL CMD ..." >&2; exit 2; }
labels=(); cmds=()
while [ $# -gt 0 ]; do labels+=("$1"); cmds+=("$2"); shift 2; done
log=${AB_LOG:-$(mktemp /tmp/ab_alternate.XXXXXX)}
: > "$log"
tfile=$(mktemp /tmp/ab_time.XXXXXX)
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1 - warmup; r <= rounds; r++)); do
  for i in "${!cmds[@]}"; do
    [ -n "$before" ] && sh -c "$before"
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$tfile" sh -c "${cmds[$i]}" > /dev/null 2>&1 \
      || { echo "${labels[$i]}: failed (exit $?): ${cmds[$i]}" >&2; exit 1; }
    t1=$(date +%s.%N)
    read -r u s m < "$tfile"
    [ "$r" -ge 1 ] && echo "$r $i $(echo "$t1 - $t0" | bc -l) $u $s $m" >> "$log"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rm -f "$tfile"
python3 - "$log" "${labels[@]}" <<'EOF'
import statistics as st, sys
log, labels = sys.argv[1], sys.argv[2:]
runs = {}  # (round, cmd) -> (wall, cpu, rss_mb)
for line in open(log):
    r, i, wall, u, s, m = line.split()
    runs[(int(r), int(i))] = (float(wall), float(u) + float(s), int(m) / 1024)
rounds = sorted({r for r, _ in runs})
print(f"{'command':<28} {'wall median [min-max]':>26} {'cpu median':>11} {'peak RSS':>9} {'wall / first':>13} {'cpu / first':>12}")
for i, label in enumerate(labels):
    w = [runs[(r, i)][0] for r in rounds]; c = [runs[(r, i)][1] for r in rounds]; m = [runs[(r, i)][2] for r in rounds]
    rw = st.median(runs[(r, i)][0] / runs[(r, 0)][0] for r in rounds)
    rc = st.median(runs[(r, i)][1] / max(runs[(r, 0)][1], 1e-9) for r in rounds)
    print(f"{label:<28} {st.median(w):9.3f} s [{min(w):.3f}-{max(w):.3f}] {st.median(c):9.3f} s {st.median(m):6.0f} MB {rw:12.3f}x {rc:11.3f}x")
print(f"({len(rounds)} rounds; ratios are medians of the per-round ratios; rows in {log})")
EOF
