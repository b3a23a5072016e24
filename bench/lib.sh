# Shared by bench/compare.sh and bench/archive.sh (sourced): $work and
# $runs are set by the caller.

# run NAME CMD...: runs CMD $runs times (after eval "$PREP" when set),
# keeps the median wall time (s) and peak RSS (MB) in $wall and $rss.
# Wall time comes from date +%s%N: GNU time's %e has 10 ms resolution,
# and an indexed extract takes about that.
run() {
  local name=$1; shift
  local w=() r=()
  for i in $(seq "$runs"); do
    [[ -n ${PREP:-} ]] && eval "$PREP"
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time" "$@" >"$work/out.$name" 2>"$work/err.$name" || {
      echo "FAILED: $name: $*" >&2; tail -20 "$work/err.$name" >&2; exit 1; }
    t1=$(date +%s%N)
    w+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
    r+=("$(tail -1 "$work/time")")
  done
  wall=$(printf '%s\n' "${w[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p")
  rss=$(printf '%s\n' "${r[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p")
  rss=$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')
  echo "  $name: ${wall}s ${rss}MB (runs: ${w[*]})" >&2
}
