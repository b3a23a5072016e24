#!/usr/bin/env bash
# Times pcapflow against the tools users would otherwise run, on the same
# capture, and checks that each pair gives the same answer.
#
#   bench/compare.sh CAPTURE [RUNS]
#
# Needs: pcapflow (on PATH, or PCAPFLOW=path), tshark, tcpdump, tcpflow,
# GNU time (/usr/bin/time). Every figure is the median of RUNS runs
# (default 3) of wall time and peak RSS; the page cache is warm (the
# capture is read once first). Prints a Markdown table.
set -euo pipefail
cap=$(realpath "$1"); runs=${2:-3}
pf=${PCAPFLOW:-pcapflow}
work=$(mktemp -d "${TMPDIR:-/tmp}/pfbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export LC_ALL=C TZ=UTC
size=$(stat -c %s "$cap")
idx="$work/idx.pfidx"

. "$(dirname "$0")/lib.sh"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.1f", b / a; else print "inf" }'; }
gbps() { awk -v s="$size" -v t="$1" 'BEGIN { if (t > 0) printf "%.2f", s / t / 1e9; else print "inf" }'; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

echo "capture: $cap ($size bytes)" >&2
cat "$cap" >/dev/null

run cat cat "$cap"; row "read the file (\`cat\`)" "${wall}s" "$(gbps "$wall") GB/s" "${rss} MB" "" "ceiling"
cat_wall=$wall

# --- flow table: pcapflow flows (scan) vs tshark conversations ---
run pf_flows "$pf" flows --scan -F csv "$cap"; pf_wall=$wall; pf_rss=$rss
run tshark_conv tshark -n -r "$cap" -q -z conv,tcp -z conv,udp; ts_wall=$wall; ts_rss=$rss
pf_convs=$("$pf" flows --scan --bidir -F csv "$cap" tcp or udp | tail -n +2 | wc -l)
ts_convs=$(grep -c '<->' "$work/out.tshark_conv" || true)
check="conversations: pcapflow $pf_convs, tshark $ts_convs"
[[ $pf_convs == "$ts_convs" ]] && check="$check (equal)" || check="$check (DIFFER)"
row "flow table: \`pcapflow flows --scan\` vs \`tshark -z conv,tcp -z conv,udp\`" "${pf_wall}s vs ${ts_wall}s" "$(gbps "$pf_wall") GB/s" "${pf_rss} vs ${ts_rss} MB" "$(ratio "$pf_wall" "$ts_wall")x" "$check"

# --- index ---
PREP="rm -rf '$idx'" run pf_index "$pf" index -i "$idx" "$cap"; ix_wall=$wall; ix_rss=$rss
ix_size=$(du -sb "$idx" | cut -f1)
ix_pct=$(awk -v a="$ix_size" -v b="$size" 'BEGIN { printf "%.2f", 100 * a / b }')
flows=$("$pf" count -i "$idx" -F json | sed 's/.*"flows":\([0-9]*\).*/\1/')
row "\`pcapflow index\`" "${ix_wall}s" "$(gbps "$ix_wall") GB/s" "${ix_rss} MB" "$(ratio "$ix_wall" "$ts_wall")x tshark conv" "index $ix_size bytes = ${ix_pct}% of the capture; $flows flows"

# --- extract one small and one large conversation ---
extract_pair() { # LABEL ID
  local label=$1 id=$2 line peer proto src dst sp dp
  line=$("$pf" flows -i "$idx" -F csv flow "$id" | tail -n 1)
  IFS=, read -r _ peer proto src dst sp dp _ <<<"$line"
  local pff="flow $id"; [[ $peer != 0 ]] && pff="flow $id or flow $peer"
  local af=ip.addr; [[ $src == *:* ]] && af=ipv6.addr
  # !icmp: tshark's fields also match the headers an ICMP error quotes;
  # the flow (and tcpdump's filter) is the datagrams themselves.
  local tsf="$af==$src && $af==$dst && $proto.port==$sp && $proto.port==$dp && !icmp && !icmpv6"
  local tdf="host $src and host $dst and $proto port $sp and $proto port $dp"
  echo "$label: $proto $src:$sp <-> $dst:$dp (flows $pff)" >&2
  run pf_x_$label "$pf" extract -i "$idx" -w "$work/pf.pcap" --force $pff; local pw=$wall pr=$rss
  run ts_x_$label tshark -n -r "$cap" -Y "$tsf" -w "$work/ts.pcap"; local tw=$wall tr=$rss
  run td_x_$label tcpdump -n -r "$cap" -w "$work/td.pcap" "$tdf"; local dw=$wall dr=$rss
  local np nt nd
  np=$(tcpdump -n -r "$work/pf.pcap" 2>/dev/null | wc -l)
  nt=$(tcpdump -n -r "$work/ts.pcap" 2>/dev/null | wc -l)
  nd=$(tcpdump -n -r "$work/td.pcap" 2>/dev/null | wc -l)
  local c="packets: pcapflow $np, tshark $nt, tcpdump $nd"
  [[ $np == "$nt" && $np == "$nd" ]] && c="$c (equal)" || c="$c (DIFFER)"
  row "extract $label conversation: pcapflow (index) vs tshark -Y -w" "${pw}s vs ${tw}s" "" "${pr} vs ${tr} MB" "$(ratio "$pw" "$tw")x" "$c"
  row "extract $label conversation: pcapflow (index) vs tcpdump -w" "${pw}s vs ${dw}s" "" "${pr} vs ${dr} MB" "$(ratio "$pw" "$dw")x" ""
}
small=$("$pf" flows -i "$idx" -F csv 'packets == 2 and (tcp or udp)' --limit 1 | tail -n 1 | cut -d, -f1)
large=$("$pf" flows -i "$idx" -F csv --sort packets --reverse --limit 1 | tail -n 1 | cut -d, -f1)
extract_pair small "$small"
extract_pair large "$large"

# --- a selective query: one host and port, from the index vs a pass ---
# The large conversation's client side (its ephemeral port): one
# conversation among a million, as an analyst's question usually is.
IFS=, read -r _ _ qproto qsrc qdst qsp qdp _ <<<"$("$pf" flows -i "$idx" -F csv flow "$large" | tail -n 1)"
if (( qdp > qsp )); then qsrc=$qdst qsp=$qdp; fi
qaf=ip.addr; [[ $qsrc == *:* ]] && qaf=ipv6.addr
run pf_query "$pf" flows -i "$idx" -F csv --bidir "$qproto" and host "$qsrc" and port "$qsp"; qw=$wall; qr=$rss
run ts_query tshark -n -r "$cap" -q -z "conv,$qproto,$qaf==$qsrc && $qproto.port==$qsp"; qtw=$wall; qtr=$rss
qn=$(tail -n +2 "$work/out.pf_query" | wc -l)
qt=$(grep -c '<->' "$work/out.ts_query" || true)
c="conversations: pcapflow $qn, tshark $qt"
[[ $qn == "$qt" ]] && c="$c (equal)" || c="$c (DIFFER)"
row "query \`$qproto and host $qsrc and port $qsp\`: \`pcapflow flows -i\` vs \`tshark -z conv,FILTER\`" "${qw}s vs ${qtw}s" "" "${qr} vs ${qtr} MB" "$(ratio "$qw" "$qtw")x" "$c"

# --- every TCP stream ---
run pf_streams_w "$pf" streams -i "$idx" -w /dev/null --tcpheader --gaps zero tcp; ww=$wall; wr=$rss
row "all TCP streams to one output: \`pcapflow streams -w /dev/null --tcpheader\`" "${ww}s" "$(gbps "$ww") GB/s" "${wr} MB" "" "$(sed -n 's/^wrote \([0-9]*\) streams.*: \([0-9]*\) bytes.*/\1 streams, \2 bytes/p' "$work/err.pf_streams_w")"
PREP="rm -rf '$work/pfs'" run pf_streams "$pf" streams -i "$idx" -O "$work/pfs" --gaps zero tcp; sw=$wall; sr=$rss
pn=$(find "$work/pfs" -type f | wc -l); pb=$(du -sb --apparent-size "$work/pfs" | cut -f1)
rm -rf "$work/pfs" # a tmpfs has room for one tool's million files at a time (inodes)
PREP="rm -rf '$work/tfs'; mkdir '$work/tfs'" run tcpflow tcpflow -r "$cap" -o "$work/tfs"; tw=$wall; tr=$rss
tn=$(find "$work/tfs" -type f ! -name report.xml | wc -l); tb=$(find "$work/tfs" -type f ! -name report.xml -printf '%s\n' | awk '{s+=$1} END {print s+0}')
row "all TCP streams: \`pcapflow streams -O\` (index, --gaps zero) vs \`tcpflow -r -o\`" "${sw}s vs ${tw}s" "$(gbps "$sw") GB/s" "${sr} vs ${tr} MB" "$(ratio "$sw" "$tw")x" "files: pcapflow $pn, tcpflow $tn; bytes: pcapflow $pb, tcpflow $tb"

echo
echo "| task | wall (median of $runs) | throughput | peak RSS | speed-up | check |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
