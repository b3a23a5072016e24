#!/usr/bin/env bash
# Ingest, memory, archives, compression and export, side by side with
# the peers, in one run (docs/BENCHMARKS.md, "Archive run").
#
#   bench/archive.sh CAPTURE SHIFTED ROTDIR [RUNS]
#
# CAPTURE: the real capture (../shared/bench/make-real-capture.sh);
# SHIFTED: the same two hours later (editcap -t 7200 CAPTURE SHIFTED);
# ROTDIR: CAPTURE cut by tcpdump -r CAPTURE -C 100 -w ROTDIR/part.
# Needs pcapflow (PCAPFLOW=path), PCAP_FLOW=path to FMADIO's pcap_flows,
# BRIMCAP=path to brimcap, tcpdump, zstd, gzip, GNU time; hyperfine and
# CORES=path to a build of bench/cores when present. Medians of
# RUNS (default 3) runs; the page cache is warm unless a row says cold.
# WORK (default: a directory beside CAPTURE) holds the outputs.
set -euo pipefail
cap=$(realpath "$1"); shifted=$(realpath "$2"); rot=$(realpath "$3"); runs=${4:-3}
pf=${PCAPFLOW:-pcapflow}
work=${WORK:-$(dirname "$cap")/archive-bench}
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export LC_ALL=C TZ=UTC
size=$(stat -c %s "$cap")

. "$(dirname "$0")/lib.sh"
gbps() { awk -v s="${2:-$size}" -v t="$1" 'BEGIN { printf "%.2f", s / t / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", 100 * a / b }'; }
# pct3: three decimals, for the index size, whose target is 1.00%.
pct3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", 100 * a / b }'; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }
# flowsig INDEX: a digest of every flow without its capture's name
flowsig() { "$pf" flows -i "$1" -F json | sed 's/"capture":"[^"]*",//' | md5sum | cut -c1-12; }

echo "capture: $cap ($size bytes)" >&2
cat "$cap" "$shifted" >/dev/null

# --- ingest, one capture ---
run cat cat "$cap"; cat_wall=$wall
row "read the file (\`cat\`)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "the ceiling"
if [[ -n ${PCAP_FLOW:-} ]]; then
  # Its flow table tracks TCP and UDP only when extracting them: every
  # port is extracted and then disabled, so nothing is written.
  run pcap_flow "$PCAP_FLOW" "$cap" --flow-max 3000000 --disable-display --extract-tcp-port 0 65535 --disable-tcp-port 0 65535 \
    --extract-udp-port 0 65535 --disable-udp-port 0 65535; pfl_wall=$wall
  row "FMADIO \`pcap_flows\`, flow table of every TCP and UDP flow, no output (about 1 s is TSC calibration)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" ""
fi
if [[ -n ${BRIMCAP:-} ]]; then
  run brimcap "$BRIMCAP" index -r "$cap" -x "$work/brim.json"
  row "\`brimcap index -x\` (time slots, no flows)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "index $(stat -c %s "$work/brim.json") bytes"
fi
idx="$work/one.idx"
PREP="rm -rf '$idx'" run pf_index "$pf" index -i "$idx" "$cap"; one_wall=$wall; one_rss=$rss
ix_size=$(du -sb "$idx" | cut -f1)
extra=""; [[ -n ${pfl_wall:-} ]] && extra="; $(ratio "$wall" "$pfl_wall")x pcap_flow's time"
row "\`pcapflow index\` (2 cores)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "index $ix_size bytes = $(pct3 "$ix_size" "$size")% of the capture$extra"
PREP="rm -rf '$work/g1.idx'" run pf_index1 env GOMAXPROCS=1 "$pf" index -i "$work/g1.idx" "$cap"
row "\`GOMAXPROCS=1 pcapflow index\`" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "2 cores are $(ratio "$wall" "$one_wall")x one"
rm -rf "$work/g1.idx"
PREP="rm -rf '$work/l320.idx'" run pf_index_320 "$pf" index --memory-limit 320M -i "$work/l320.idx" "$cap"
row "\`pcapflow index --memory-limit 320M\` (the default before 260M)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "the default is $(ratio "$one_wall" "$wall")x its time"
rm -rf "$work/l320.idx"
PREP="rm -rf '$work/nolimit.idx'" run pf_index_nolimit "$pf" index --memory-limit 0 -i "$work/nolimit.idx" "$cap"
row "\`pcapflow index --memory-limit 0\` (no backpressure)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" ""
rm -rf "$work/nolimit.idx"

# What a second core gives on this machine, for reading the row above.
if [[ -n ${CORES:-} ]]; then
  ilp=$("$CORES" -rounds 5 | awk '$1 == "ilp" { print $(NF-2) }')
  row "this machine: integer work on 2 goroutines against 1 (\`bench/cores\`, ilp)" "" "" "" "$ilp of a perfect 2x"
fi

# --- a two-capture archive: memory follows live flows ---
PREP="rm -rf '$work/two.idx'" run pf_two "$pf" index -i "$work/two.idx" "$cap" "$shifted"
two_size=$(( size + $(stat -c %s "$shifted") ))
row "\`pcapflow index\` of the capture and its copy 2 h later" "${wall}s" "$(gbps "$wall" "$two_size") GB/s" "${rss} MB" "peak RSS $(ratio "$rss" "$one_rss")x one capture's"
rm -rf "$work/two.idx"

# --- a rotated archive: 21 files of 100 MB ---
nrot=$(ls "$rot" | wc -l)
PREP="rm -rf '$work/rot.idx'" run pf_rot "$pf" index -i "$work/rot.idx" "$rot"
sig_one=$(flowsig "$idx"); sig_rot=$(flowsig "$work/rot.idx")
same="flows identical to the single file's: $([[ $sig_one == "$sig_rot" ]] && echo yes || echo NO)"
row "\`pcapflow index\` of the capture rotated into $nrot files (\`tcpdump -C 100\`)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "$same"
t0=$(date +%s%N); rm -rf "$work/runs.idx"
for f in $(ls -v "$rot"); do "$pf" index -i "$work/runs.idx" "$rot/$f" 2>/dev/null; done
t1=$(date +%s%N)
runs_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
sig_runs=$(flowsig "$work/runs.idx")
row "the same, one \`index\` run per file (a sensor adding each file as it rotates)" "${runs_wall}s (sum of $nrot runs, once)" "$(gbps "$runs_wall") GB/s" "" "flows identical: $([[ $sig_one == "$sig_runs" ]] && echo yes || echo NO)"
rm -rf "$work/rot.idx" "$work/runs.idx"

# --- cold cache ---
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  PREP="sync; echo 3 >/proc/sys/vm/drop_caches" run cat_cold cat "$cap"; cold_cat=$wall
  row "\`cat\`, cold cache (this disk's sequential read)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" ""
  PREP="rm -rf '$work/cold.idx'; sync; echo 3 >/proc/sys/vm/drop_caches" run pf_cold "$pf" index -i "$work/cold.idx" "$cap"
  row "\`pcapflow index\`, cold cache" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "$(pct "$cold_cat" "$wall")% of the disk's read rate"
  rm -rf "$work/cold.idx"
  cat "$cap" >/dev/null
else
  row "cold cache" "" "" "" "not measured: this machine does not allow dropping caches"
fi

# --- one small flow, as a process ---
# A small flow whose 4-tuple no other connection reuses (ab reuses
# ephemeral ports a lot), so that tcpdump's
# BPF selects exactly its packets.
while IFS=, read -r sid _ _ ssrc sdst ssp sdp _; do
  n=$("$pf" count -i "$idx" -F json src host "$ssrc" and dst host "$sdst" and src port "$ssp" and dst port "$sdp" | sed 's/.*"flows":\([0-9]*\).*/\1/')
  [[ $n == 1 ]] && break
done < <("$pf" flows -i "$idx" -F csv 'packets <= 12 and tcp' --sort bytes --limit 3000 | tail -n +2)
run x_small "$pf" extract -i "$idx" -w "$work/small.pcap" --force flow "$sid"; xs=$wall; xsr=$rss
run td_small tcpdump -n -r "$cap" -w "$work/small-td.pcap" "src host $ssrc and dst host $sdst and tcp src port $ssp and tcp dst port $sdp"
same=$(cmp -s "$work/small.pcap" "$work/small-td.pcap" && echo "byte-identical" || echo "DIFFER")
row "extract one small flow (flow $sid): \`pcapflow extract -i\` vs \`tcpdump -r -w BPF\`" "${xs}s vs ${wall}s" "" "${xsr} vs ${rss} MB" "$(ratio "$wall" "$xs")x; outputs $same"
if command -v hyperfine >/dev/null; then
  hyperfine -N -w 5 -r 40 --export-json "$work/hf.json" "$pf extract -i $idx -w $work/small.pcap --force flow $sid" >/dev/null 2>&1
  hf=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f ms median, %.1f ± %.1f ms mean" % (r["median"]*1e3, r["mean"]*1e3, r["stddev"]*1e3))' "$work/hf.json")
  row "the same extract, \`hyperfine -N -w 5 -r 40\`" "$hf" "" "" "$(ratio "$wall" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$work/hf.json")")x tcpdump's median above"
fi

# --- compression ---
run compress "$pf" compress "$cap" -o "$work/c.pcap.zst" --force; cw=$wall; cr=$rss; cs=$(stat -c %s "$work/c.pcap.zst")
run zstd1 sh -c "zstd -1 -T0 -q -c '$cap' >'$work/z1.zst'"; zw=$wall; zs=$(stat -c %s "$work/z1.zst")
runs_save=$runs; runs=1
run gzip1 sh -c "gzip -1 -c '$cap' >'$work/c.pcap.gz'"; gw=$wall; gs=$(stat -c %s "$work/c.pcap.gz")
runs=$runs_save
row "\`pcapflow compress\` (seekable zstd, 1 MiB frames)" "${cw}s" "$(gbps "$cw") GB/s" "${cr} MB" "$cs bytes = $(pct "$cs" "$size")%; $(ratio "$cs" "$zs")x the size of \`zstd -1\`"
row "\`zstd -1 -T0\`" "${zw}s" "$(gbps "$zw") GB/s" "" "$zs bytes = $(pct "$zs" "$size")%; not seekable"
row "\`gzip -1\` (one run)" "${gw}s" "$(gbps "$gw") GB/s" "" "$gs bytes = $(pct "$gs" "$size")%"
zstd -dc "$work/c.pcap.zst" | cmp -s - "$cap" && zok=yes || zok=NO
row "\`zstd -d\` of pcapflow's file restores the capture" "" "" "" "$zok"
PREP="rm -rf '$work/z.idx'" run index_zst "$pf" index -i "$work/z.idx" "$work/c.pcap.zst"
row "\`pcapflow index\` of the seekable zstd" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "index $(du -sb "$work/z.idx" | cut -f1) bytes"
PREP="rm -rf '$work/gz.idx'" run index_gz "$pf" index -i "$work/gz.idx" "$work/c.pcap.gz"
gzix=$(du -sb "$work/gz.idx" | cut -f1)
row "\`pcapflow index\` of the gzip (keeps checkpoints)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "index $gzix bytes = $(pct3 "$gzix" "$size")% ($(pct $(( gzix - ix_size )) "$size")% more than the plain capture's)"
last=$("$pf" count -i "$idx" -F json | sed 's/.*"flows":\([0-9]*\).*/\1/')
run last_plain "$pf" extract -i "$idx" -w "$work/last-p.pcap" --force flow "$last"; lp=$wall
run last_zst "$pf" extract -i "$work/z.idx" -w "$work/last-z.pcap" --force flow "$last"; lz=$wall; lzr=$rss
run last_gz "$pf" extract -i "$work/gz.idx" -w "$work/last-g.pcap" --force flow "$last"; lg=$wall; lgr=$rss
eq() { cmp -s "$1" "$2" && echo "byte-identical to the plain capture's" || echo "DIFFER"; }
row "extract the last flow (flow $last) from the plain capture" "${lp}s" "" "" ""
row "... from the seekable zstd" "${lz}s" "" "${lzr} MB" "$(eq "$work/last-z.pcap" "$work/last-p.pcap")"
row "... from the gzip" "${lg}s" "" "${lgr} MB" "$(eq "$work/last-g.pcap" "$work/last-p.pcap")"

# --- export ---
PREP="rm -rf '$work/export'" run export "$pf" export -i "$idx" -o "$work/export" --sensor bench
eb=$(du -sb "$work/export" | cut -f1)
conv=$("$pf" flows -i "$idx" --bidir -F csv | tail -n +2 | wc -l)
row "\`pcapflow export\` (Parquet, zstd)" "${wall}s" "" "${rss} MB" "$eb bytes for $conv conversations = $(awk -v a="$eb" -v b="$conv" 'BEGIN { printf "%.1f", a / b }') B each"

echo
echo "| task | wall (median of $runs) | throughput | peak RSS | notes |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
