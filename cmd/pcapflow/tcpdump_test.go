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
	"github.com/pcapflow/pcapflow/internal/capgen"
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
			// tcpdump's own spellings, given to both as they are.
			{"src " + a.String(), "src " + a.String() + " and (ip or ip6)"},
			{"dst " + a.String() + " or " + a.String(), "dst " + a.String() + " or " + a.String() + " and (ip or ip6)"},
			{"ip proto 17", "ip proto 17"},
			{"ip6 proto 6", "ip6 proto 6"},
			// BPF's icmp6 does not walk IPv6 extension headers; MLD's
			// hop-by-hop header is the common one, spelled out here.
			{"icmp6", "icmp6 or (ip6 and ip6[6] == 0 and ip6[40] == 58)"},
		}
		if a.Is4() {
			o := a.As4()
			abbrev := fmt.Sprintf("%d.%d", o[0], o[1])
			pairs = append(pairs,
				[2]string{"ip host " + a.String(), "ip host " + a.String()},
				[2]string{"net " + abbrev, "net " + abbrev + " and ip"},
				[2]string{"ip src host " + a.String() + " or dst host " + a.String(), "ip src host " + a.String() + " or dst host " + a.String()},
			)
		} else {
			pairs = append(pairs, [2]string{"ip6 src host " + a.String(), "ip6 src host " + a.String()})
		}
		if tcpudp != nil {
			p := tcpudp.Key.DstPort
			pairs = append(pairs,
				[2]string{fmt.Sprintf("port %d", p), fmt.Sprintf("port %d", p)},
				[2]string{fmt.Sprintf("dst port %d", p), fmt.Sprintf("dst port %d", p)},
				[2]string{fmt.Sprintf("portrange %d-%d", max(int(p)-10, 0), p), fmt.Sprintf("portrange %d-%d", max(int(p)-10, 0), p)},
				[2]string{fmt.Sprintf("host %s and port %d", a, p), fmt.Sprintf("host %s and port %d", a, p)},
				[2]string{fmt.Sprintf("tcp port %d", p), fmt.Sprintf("tcp port %d", p)},
				[2]string{fmt.Sprintf("udp dst port %d", p), fmt.Sprintf("udp dst port %d", p)},
				[2]string{fmt.Sprintf("tcp portrange %d-%d", max(int(p)-10, 0), p), fmt.Sprintf("tcp portrange %d-%d", max(int(p)-10, 0), p)},
				[2]string{fmt.Sprintf("port %d or 53", p), fmt.Sprintf("port %d or 53", p)},
				[2]string{fmt.Sprintf("tcp port %d or 53 or 443", p), fmt.Sprintf("tcp port %d or 53 or 443", p)},
				[2]string{fmt.Sprintf("port %d and not 53", p), fmt.Sprintf("port %d and not 53", p)},
			)
		}
		for _, pr := range pairs {
			out := filepath.Join(t.TempDir(), "x.pcap")
			r := runCLI(t, nil, append([]string{"extract", path, "-w", out, "--"}, strings.Fields(pr[0])...)...)
			if r.code != 0 {
				t.Fatalf("%s: extract %q: %+v", e.File, pr[0], r)
			}
			ours, _ := os.ReadFile(out)
			var stderr bytes.Buffer
			cmd := exec.Command("tcpdump", "-r", path, "-w", "-", pr[1])
			cmd.Stderr = &stderr
			td, err := cmd.Output()
			var b []string
			switch {
			case err != nil && strings.Contains(stderr.String(), "expression rejects all packets"):
				// (no such packet can exist on this link type)
			case err != nil:
				t.Fatalf("%s: tcpdump %q: %v %s", e.File, pr[1], err, stderr.String())
			default:
				b = packetHashes(t, td)
			}
			a := packetHashes(t, ours)
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

// tcpdump's spellings select what tcpdump selects on a generated capture
// of TCP and UDP over IPv4 and IPv6 (no fragments, no ICMP errors), in
// scan mode and from an index; a filter whose meaning differs between
// tcpdump's precedence and ours is refused.
func TestTcpdumpSpellingsGenerated(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (.ci/run installs it)")
	}
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 21, Bytes: 2 << 20, Active: 100, MeanPackets: 4}).WritePcap(&b, capgen.PcapOptions{})
	p := filepath.Join(t.TempDir(), "mix.pcap")
	os.WriteFile(p, b.Bytes(), 0o644)
	idx := filepath.Join(t.TempDir(), "mix.pfidx")
	if r := runCLI(t, nil, "index", "-i", idx, p); r.code != 0 {
		t.Fatal(r)
	}
	filters := []string{
		"tcp port 80", "udp dst port 53", "udp src port domain", "tcp src port http",
		"ip host 192.0.2.7", "ip6 host 2001:db8:2::7", "ip6 src host 2001:db8:1::e",
		"src 192.0.2.7", "dst 10.0.0.9", "src 192.0.2.7 or 192.0.2.8", "ip proto 17", "ip6 proto 6",
		"tcp portrange 1000-3000", "net 10.0", "net 192.0.2", "src net 10", "port 80 or 53",
		"tcp port 80 or 53", "port 53 and not 80", "tcp and (port 80 or 53)",
		"host 192.0.2.7 and tcp port 80 or host 192.0.2.8", "not tcp and not udp", "icmp6",
	}
	for _, f := range filters {
		td, err := exec.Command("tcpdump", "-r", p, "-w", "-", f).Output()
		if err != nil {
			t.Fatalf("tcpdump %q: %v", f, err)
		}
		want := packetHashes(t, td)
		if len(want) == 0 && f != "not tcp and not udp" && f != "icmp6" {
			t.Errorf("%q selects nothing in the generated capture: the comparison proves nothing", f)
		}
		for _, src := range [][]string{{"--scan", p}, {"-i", idx}} {
			out := filepath.Join(t.TempDir(), "x.pcap")
			r := runCLI(t, nil, append(append(append([]string{"extract"}, src...), "-w", out, "--"), strings.Fields(f)...)...)
			if r.code != 0 {
				t.Fatalf("%v extract %q: %+v", src, f, r)
			}
			ours, _ := os.ReadFile(out)
			if got := packetHashes(t, ours); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%v %q: %d packets, tcpdump %d", src, f, len(got), len(want))
			}
		}
	}
	// 'or' then 'and': tcpdump reads left to right, we would bind 'and'
	// first; refused, with a caret, exit 2.
	r := runCLI(t, nil, "flows", p, "tcp", "or", "udp", "and", "not", "port", "80")
	if r.code != 2 || !strings.Contains(r.stderr, "needs parentheses") || !strings.Contains(r.stderr, "^") {
		t.Errorf("tcp or udp and not port 80: %+v", r)
	}
	// Host names are not resolved, and say so.
	r = runCLI(t, nil, "flows", p, "host", "foo.example.com")
	if r.code != 2 || !strings.Contains(r.stderr, "host names are not resolved") {
		t.Errorf("host foo.example.com: %+v", r)
	}
}
