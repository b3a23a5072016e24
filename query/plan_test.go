package query

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
)

// archive indexes the generated captures and every readable corpus file
// into one index, and scans the same captures into memory.
func archive(t *testing.T) (*index.Store, *index.Mem) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, f := range capgen.Files() {
		p := filepath.Join(dir, f.Name)
		os.WriteFile(p, f.Make(), 0o644)
		paths = append(paths, p)
	}
	if d := corpus.Find(); d != "" {
		for _, e := range corpus.Manifest(t) {
			if e.Packets > 0 && !e.Has("malformed") {
				paths = append(paths, filepath.Join(d, e.File))
			}
		}
	} else {
		t.Log("corpus not found: generated captures only")
	}
	idx := filepath.Join(dir, "all.pfidx")
	if _, err := index.Build(context.Background(), idx, paths, index.Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := index.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mem, err := index.Scan(context.Background(), paths, index.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st, mem
}

// filterGen makes random filters from the values the flows hold, so
// that most primitives match something.
type filterGen struct {
	r     *rand.Rand
	flows []flow.Flow
}

func (g *filterGen) pick() *flow.Flow { return &g.flows[g.r.Intn(len(g.flows))] }

func (g *filterGen) dir() string {
	return []string{"", "", "src ", "dst ", "src and dst ", "src or dst "}[g.r.Intn(6)]
}

func (g *filterGen) prim() string {
	f := g.pick()
	k := &f.Key
	addr := k.SrcAddr()
	if g.r.Intn(2) == 0 {
		addr = k.DstAddr()
	}
	switch g.r.Intn(20) {
	case 17:
		return []string{"tunnel", "tunnel vxlan", "tunnel gre", "inner", "outer"}[g.r.Intn(5)]
	case 18:
		return fmt.Sprintf("vni %d", k.TunnelID)
	case 0:
		lo := 1 + uint64(g.r.Intn(len(g.flows)))
		return fmt.Sprintf("flow %d-%d", lo, lo+uint64(g.r.Intn(30)))
	case 1, 2:
		return g.dir() + "host " + addr.String()
	case 3:
		bits := []int{8, 16, 24, 28, 32}[g.r.Intn(5)]
		if addr.Is6() {
			bits = []int{16, 32, 64, 120, 128}[g.r.Intn(5)]
		}
		return g.dir() + "net " + netip.PrefixFrom(addr, bits).Masked().String()
	case 4:
		if addr.Is4() {
			return g.dir() + "net " + netip.PrefixFrom(addr, 16).Masked().Addr().String() + " mask 255.255.0.0"
		}
		return "ip6"
	case 5, 6:
		return g.dir() + fmt.Sprintf("port %d", k.SrcPort)
	case 7:
		lo := int(k.DstPort) - g.r.Intn(100)
		return g.dir() + fmt.Sprintf("portrange %d-%d", max(lo, 0), int(k.DstPort)+g.r.Intn(3))
	case 8:
		return []string{"tcp", "udp", "icmp", "icmp6", "ip", "ip6", "proto 47", "sctp"}[g.r.Intn(8)]
	case 9:
		if k.NumVLAN > 0 {
			return fmt.Sprintf("vlan %d", k.VLAN[g.r.Intn(int(k.NumVLAN))])
		}
		return "vlan"
	case 10:
		if f.HasSrcMAC {
			return "ether " + g.dir() + "host " + macString(f.SrcMAC)
		}
		return "ether host 00:00:00:00:00:00"
	case 11:
		return "after " + time.Unix(0, f.First+int64(g.r.Intn(3)-1)).UTC().Format(time.RFC3339Nano)
	case 12:
		return "before " + time.Unix(0, f.Last+int64(g.r.Intn(3)-1)).UTC().Format(time.RFC3339Nano)
	case 13:
		return fmt.Sprintf("packets %s %d", []string{">", ">=", "<", "<=", "==", "!="}[g.r.Intn(6)], f.Packets)
	case 14:
		return fmt.Sprintf("bytes %s %d", []string{">", ">=", "<", "<=", "==", "!="}[g.r.Intn(6)], f.Bytes)
	case 15:
		return "community " + f.CommunityID()
	}
	return fmt.Sprintf("flow %d", 1+g.r.Intn(len(g.flows)))
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func (g *filterGen) expr(depth int) string {
	if depth == 0 || g.r.Intn(3) == 0 {
		return g.prim()
	}
	switch g.r.Intn(4) {
	case 0:
		return "not " + g.expr(depth-1)
	case 1:
		// Each side of an 'or' in parentheses: an 'and' after an 'or'
		// at one level is refused (tcpdump would read it otherwise).
		return "((" + g.expr(depth-1) + ") or (" + g.expr(depth-1) + "))"
	}
	return g.expr(depth-1) + " and " + g.expr(depth-1)
}

func ids(t *testing.T, r index.Reader, e Expr) []uint64 {
	t.Helper()
	got, err := SelectIDs(context.Background(), r, e)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Random filters give the same flows from the index (lookups, set
// operations, residual checks) as from a scan (every record checked).
func TestPlanMatchesScan(t *testing.T) {
	st, mem := archive(t)
	var flows []flow.Flow
	mem.Flows(context.Background(), nil, func(f *flow.Flow) error { flows = append(flows, *f); return nil })
	g := &filterGen{r: rand.New(rand.NewSource(1)), flows: flows}
	nonEmpty := 0
	for i := 0; i < 400; i++ {
		s := g.expr(3)
		e, err := Parse(s)
		if err != nil {
			t.Fatalf("generated filter %q: %v", s, err)
		}
		a, b := ids(t, st, e), ids(t, mem, e)
		if !slices.Equal(a, b) {
			t.Fatalf("filter %q (normal form %q):\n index %d flows %v\n scan  %d flows %v", s, e, len(a), head(a), len(b), head(b))
		}
		if len(a) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 100 {
		t.Errorf("only %d of 400 random filters matched anything: the generator is too weak", nonEmpty)
	}
	t.Logf("%d flows; 400 filters, %d non-empty", len(flows), nonEmpty)
}

func head(x []uint64) []uint64 {
	if len(x) > 20 {
		return x[:20]
	}
	return x
}

// explain shows lookups skipped in favour of checking records.
func TestPlanSkipsUnselectiveLookups(t *testing.T) {
	st, _ := archive(t)
	e := MustParse("(host 10.0.0.9 and tcp) or (host 10.0.0.9 and ip)")
	tr := &Trace{}
	if err := SelectTrace(context.Background(), st, e, tr, func(*flow.Flow) error { return nil }); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(tr.Lines, "\n")
	// "ip" holds every flow of any capture set, so its lookup is skipped
	// whether or not the corpus is there ("tcp" is unselective only in
	// the corpus).
	if !strings.Contains(text, "ip: est.") || !strings.Contains(text, "not looked up") {
		t.Errorf("the protocol lookup was not skipped:\n%s", text)
	}
}

// Addresses, ports and MACs are looked up in the index: without src or
// dst in one lookup of either direction, with "src and dst" in two
// intersected. (ether host was once checked on every flow record.)
func TestPlanLooksUpEitherDirection(t *testing.T) {
	st, _ := archive(t)
	var mac string
	st.Flows(context.Background(), nil, func(f *flow.Flow) error {
		if mac == "" && f.HasSrcMAC {
			mac = macString(f.SrcMAC)
		}
		return nil
	})
	for _, tc := range []struct{ filter, want string }{
		{"port 80", "port 80: 1 lookup(s)"},
		{"host 10.0.0.1", "host 10.0.0.1: 1 lookup(s)"},
		{"src and dst port 80", "src and dst port 80: 2 lookup(s)"},
		{"dst port 80", "dst port 80: 1 lookup(s)"},
		{"ether host " + mac, "ether host " + mac + ": 1 lookup(s)"},
		{"ether src host " + mac, "ether src host " + mac + ": 1 lookup(s)"},
	} {
		tr := &Trace{}
		if err := SelectTrace(context.Background(), st, MustParse(tc.filter), tr, func(*flow.Flow) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(tr.Lines, "\n"); !strings.Contains(text, tc.want) {
			t.Errorf("%s: plan\n%s\nwant a line with %q", tc.filter, text, tc.want)
		}
	}
}
