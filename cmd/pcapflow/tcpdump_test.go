package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

// packetHashes reads a capture and returns one hash per record's data.
func packetHashes(t *testing.T, data []byte) []string {
	t.Helper()
	r, err := pcapio.NewReader(bytes.NewReader(data), "out")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var rec pcapio.Record
	for r.Next(&rec) == nil {
		out = append(out, fmt.Sprintf("%x", sha256.Sum256(rec.Data))[:16])
	}
	return out
}

// For host, net, port, portrange and protocol filters, the packets
// extract writes are exactly those tcpdump's BPF selects, on the corpus
// files where flow and packet filters mean the same: no VLAN tags (BPF
// does not look behind them unless told), no fragments (BPF sees no
// ports in later fragments), no tunnels, no IPv6 extension headers (BPF's
// ip6 proto does not walk them), one link type.
func TestExtractMatchesTcpdump(t *testing.T) {
	dir := corpus.Dir(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (.ci/run installs it)")
	}
	skipTags := []string{"vlan", "qinq", "triple-vlan", "frag", "ipv6-frag", "gre", "vxlan", "mpls", "malformed",
		"ipv6-ext", "multi-linktype", "empty", "unsupported-linktype", "truncated-snaplen"}
	files := 0
	for _, e := range corpus.Manifest(t) {
		skip := e.Packets == 0
		for _, tag := range skipTags {
			skip = skip || e.Has(tag)
		}
		if skip {
			continue
		}
		path := filepath.Join(dir, e.File)
		mem, err := index.Scan(context.Background(), []string{path}, index.ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var first, tcpudp *flow.Flow
		tagged := false
		mem.Flows(context.Background(), nil, func(f *flow.Flow) error {
			tagged = tagged || f.Key.NumVLAN > 0
			if first == nil {
				c := *f
				first = &c
			}
			if tcpudp == nil && (f.Key.Proto == 6 || f.Key.Proto == 17) {
				c := *f
				tcpudp = &c
			}
			return nil
		})
		if first == nil || tagged {
			continue
		}
		files++
		a := first.Key.SrcAddr()
		bits := 16
		if a.Is6() {
			bits = 48
		}
		netw := netip.PrefixFrom(a, bits).Masked()
		pairs := [][2]string{ // pcapflow filter, tcpdump filter
			{"host " + a.String(), "host " + a.String() + " and (ip or ip6)"},
			{"src host " + a.String(), "src host " + a.String() + " and (ip or ip6)"},
			{"net " + netw.String(), "net " + netw.String() + " and (ip or ip6)"},
			{"tcp", "tcp"},
			{"udp", "udp"},
			{"not tcp and not udp", "(ip or ip6) and not tcp and not udp"},
		}
		if tcpudp != nil {
			p := tcpudp.Key.DstPort
			pairs = append(pairs,
				[2]string{fmt.Sprintf("port %d", p), fmt.Sprintf("port %d", p)},
				[2]string{fmt.Sprintf("dst port %d", p), fmt.Sprintf("dst port %d", p)},
				[2]string{fmt.Sprintf("portrange %d-%d", max(int(p)-10, 0), p), fmt.Sprintf("portrange %d-%d", max(int(p)-10, 0), p)},
				[2]string{fmt.Sprintf("host %s and port %d", a, p), fmt.Sprintf("host %s and port %d", a, p)},
			)
		}
		for _, pr := range pairs {
			out := filepath.Join(t.TempDir(), "x.pcap")
			r := runCLI(t, nil, append([]string{"extract", path, "-w", out, "--"}, strings.Fields(pr[0])...)...)
			if r.code != 0 {
				t.Fatalf("%s: extract %q: %+v", e.File, pr[0], r)
			}
			ours, _ := os.ReadFile(out)
			td, err := exec.Command("tcpdump", "-r", path, "-w", "-", pr[1]).Output()
			if err != nil {
				t.Fatalf("%s: tcpdump %q: %v", e.File, pr[1], err)
			}
			a, b := packetHashes(t, ours), packetHashes(t, td)
			if strings.Join(a, ",") != strings.Join(b, ",") {
				t.Errorf("%s: %q gives %d packets, tcpdump %q %d", e.File, pr[0], len(a), pr[1], len(b))
			}
		}
	}
	if files < 20 {
		t.Errorf("only %d corpus files compared", files)
	}
	t.Logf("compared %d files", files)
}
