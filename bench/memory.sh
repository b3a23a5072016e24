#!/usr/bin/env bash
# Peak memory of index as an archive grows (docs/BENCHMARKS.md, "Memory
# as the archive grows"): K time-shifted copies of one capture in one
# index run, K = 1, 2, 4. The table holds live flows, not every flow
# seen, so the peak should stay flat as K grows.
#
#   bench/memory.sh CAPTURE COPY1 COPY2 COPY3 [RUNS]
#
# The copies are CAPTURE shifted by 2, 4 and 6 hours:
#   editcap -t 7200 CAPTURE COPY1; editcap -t 14400 CAPTURE COPY2; ...
# Needs pcapflow (PCAPFLOW=path) and GNU time. WORK holds the indexes.
set -euo pipefail
caps=("$(realpath "$1")" "$(realpath "$2")" "$(realpath "$3")" "$(realpath "$4")"); runs=${5:-1}
pf=${PCAPFLOW:-pcapflow}
work=${WORK:-$(dirname "${caps[0]}")/memory-bench}
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"
echo "| K | captures | wall | peak RSS | vs K = 1 |"
echo "|---|---|---|---|---|"
for k in 1 2 4; do
  set -- "${caps[@]:0:$k}"
  bytes=$(stat -c %s "$@" | awk '{ s += $1 } END { printf "%.2f GB", s / 1e9 }')
  PREP="rm -rf '$work/k.idx'" run "k$k" "$pf" index -i "$work/k.idx" "$@"
  [[ $k == 1 ]] && base=$rss
  echo "| $k | $bytes | ${wall} s | $rss MB | $(awk -v a="$rss" -v b="$base" 'BEGIN { printf "%.2f", a / b }')x |"
done
