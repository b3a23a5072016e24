#!/bin/bash
# Makes a real rotated capture for TestRealRotation: a client and an nginx
# server in two network namespaces, 2% random loss on the client's input,
# tcpdump rotating every 1 MB (-C 1, the files are x.pcap, x.pcap1, ...)
# while a few connections download several megabytes each, so that each
# connection crosses several rotations with retransmissions around them.
# The client (python, raw sockets) writes what it sent and what it received
# per source port: the oracle the streams are compared with.
# Usage: real-rotation.sh OUTDIR   (as root; needs iproute2 iptables nginx tcpdump python3)
set -euo pipefail
out=$(realpath "$1"); mkdir -p "$out/cap" "$out/sent" "$out/got"
work=$(mktemp -d); chmod 755 "$work"
ns=pfrot$$
S="ip netns exec ${ns}s" C="ip netns exec ${ns}c"
cleanup() { kill $(jobs -p) 2>/dev/null || true; [[ -f $work/nginx.pid ]] && kill "$(cat $work/nginx.pid)" 2>/dev/null || true
  ip netns del ${ns}s 2>/dev/null || true; ip netns del ${ns}c 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Exit 77 (the test skips) where this machine cannot make namespaces.
ip netns add ${ns}s 2>/dev/null || { echo "cannot create network namespaces here" >&2; exit 77; }
ip netns add ${ns}c
ip link add ${ns}a type veth peer name ${ns}b; ip link set ${ns}a netns ${ns}s; ip link set ${ns}b netns ${ns}c
$S ip link set lo up; $C ip link set lo up
$S ip addr add 10.89.0.1/24 dev ${ns}a; $C ip addr add 10.89.0.2/24 dev ${ns}b
$S ip link set ${ns}a up; $C ip link set ${ns}b up
$S ethtool -K ${ns}a tso off gso off gro off >/dev/null 2>&1 || true
$C ethtool -K ${ns}b tso off gso off gro off >/dev/null 2>&1 || true
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(3).randbytes(3000000))' > $work/big.bin
cat > $work/nginx.conf <<NG
daemon on; pid $work/nginx.pid; error_log $work/err.log; worker_processes 1;
events { worker_connections 64; }
http { access_log off; sendfile off; types {} default_type application/octet-stream;
  server { listen 10.89.0.1:80; root $work; } }
NG
$S nginx -c $work/nginx.conf
$C iptables -A INPUT -m statistic --mode random --probability 0.02 -j DROP
$S tcpdump -Z root -i ${ns}a -s 0 -B 32768 -U -C 1 -w "$out/cap/x.pcap" >/dev/null 2>"$work/tcpdump.err" & cap=$!
sleep 1
$C python3 - "$out" <<'PY'
import socket, sys, threading, time
out = sys.argv[1]
def fetch(port, rate):
    s = socket.socket()
    s.bind(("10.89.0.2", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("10.89.0.1", 80))
    req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s.sendall(req)
    got = bytearray()
    while True:
        b = s.recv(16384)
        if not b:
            break
        got += b
        time.sleep(len(b) / rate)  # read slowly: the download spans rotations
    s.close()
    open(f"{out}/sent/{port}", "wb").write(req)
    open(f"{out}/got/{port}", "wb").write(got)
ts = [threading.Thread(target=fetch, args=(41000 + i, 4e6)) for i in range(3)]
for t in ts: t.start()
for t in ts: t.join()
PY
# tcpdump may lag behind on a busy machine, and what it has not read
# when it is stopped is lost: stop it once its files stop growing.
prev=-1 still=0
for i in $(seq 100); do
  sleep 0.3
  cur=$(du -sb "$out/cap" | cut -f1)
  if [ "$cur" = "$prev" ]; then still=$((still + 1)); else still=0; fi
  [ $still -ge 3 ] && break
  prev=$cur
done
kill -INT $cap; wait $cap 2>/dev/null || true
# A capture that lost packets to a busy machine cannot be compared with
# what the client received: say so (exit 75), the test tries again.
dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by \(kernel\|interface\).*/\1/p' "$work/tcpdump.err" | awk '{s+=$1} END {print s+0}')
if [ "${dropped:-0}" != 0 ]; then
  echo "tcpdump dropped $dropped packets: the machine is too busy" >&2
  exit 75
fi
ls "$out/cap" | wc -l
