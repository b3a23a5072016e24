package index_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/corpus"
)

// convRow is one conversation as tshark's conv tables print it.
type convRow struct {
	proto              string
	a, b               string // addr:port
	framesAB, framesBA int
	bytesAB, bytesBA   string // exact integers, or tshark's rounded "55kB"
}

func (r convRow) String() string {
	return fmt.Sprintf("%s %s<->%s %d/%s %d/%s", r.proto, r.a, r.b, r.framesAB, r.bytesAB, r.framesBA, r.bytesBA)
}

// key orders the endpoints so that both tools' rows compare.
func (r convRow) key() string {
	if r.a > r.b {
		return r.proto + " " + r.b + " " + r.a
	}
	return r.proto + " " + r.a + " " + r.b
}

// flipped returns the row with A and B exchanged.
func (r convRow) flipped() convRow {
	return convRow{r.proto, r.b, r.a, r.framesBA, r.framesAB, r.bytesBA, r.bytesAB}
}

func endpoint(addr string, port int) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}

// bytesMatch compares an exact byte count with tshark's, which is rounded
// to SI units from 10000 bytes on ("55kB", "1MB").
func bytesMatch(ours uint64, theirs string) bool {
	if n, err := strconv.ParseUint(theirs, 10, 64); err == nil {
		return n == ours
	}
	unit := 1e3
	num := strings.TrimSuffix(theirs, "kB")
	if strings.HasSuffix(theirs, "MB") {
		unit, num = 1e6, strings.TrimSuffix(theirs, "MB")
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return false
	}
	// tshark 4.0 prints 3 significant digits at most; allow the rounding.
	return float64(ours) >= (v-1)*unit && float64(ours) <= (v+1)*unit
}

// conversations groups a reader's TCP and UDP flows into tshark-style rows.
func conversations(t *testing.T, r index.Reader) []convRow {
	byID := map[uint64]*flow.Flow{}
	var ids []uint64
	err := r.Flows(context.Background(), nil, func(f *flow.Flow) error {
		c := *f
		byID[f.ID] = &c
		ids = append(ids, f.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rows []convRow
	for _, id := range ids {
		f := byID[id]
		if f.Key.Proto != 6 && f.Key.Proto != 17 {
			continue
		}
		if f.Peer != 0 && f.Peer < f.ID {
			continue
		}
		row := convRow{proto: flow.ProtoName(f.Key.Proto), a: endpoint(f.Key.SrcAddr().String(), int(f.Key.SrcPort)),
			b: endpoint(f.Key.DstAddr().String(), int(f.Key.DstPort)), framesAB: int(f.Packets), bytesAB: strconv.FormatUint(f.Bytes, 10), bytesBA: "0"}
		if p := byID[f.Peer]; p != nil {
			row.framesBA, row.bytesBA = int(p.Packets), strconv.FormatUint(p.Bytes, 10)
		}
		rows = append(rows, row)
	}
	return rows
}

// convDeviations lists the corpus files where pcapflow deliberately
// differs from tshark's conversation table (docs/flows.md explains each
// case). "ours" are our rows where tshark's counts differ; "extra" are
// rows only we have.
var convDeviations = map[string]struct {
	why         string
	ours, extra []string
}{
	"zeek__ipv4_fragmented-1.pcap": {why: fragWhy,
		ours: []string{"udp 164.1.123.163:123<->164.1.123.61:137 3/548 0/0"}},
	"zeek__ipv4_fragmented-4.pcap": {why: fragWhy,
		ours: []string{"tcp 128.32.46.142:7790<->10.0.0.1:80 5/303 0/0"}},
	"suricata__defrag_bug-6887-defrag-ipv6-tcp_frag-ip-tcp.pcap": {why: fragWhy,
		ours: []string{"tcp [::1]:12345<->[::1]:8080 3/1164 0/0"}},
	"zeek__ipv6-fragmented-dns.pcap": {why: fragWhy + "; " + orphanWhy,
		ours:  []string{"udp [2001:470:1f11:81f:d138:5f55:6d4:1fe2]:51851<->[2607:f740:b::f93]:53 2/272 3/3424"},
		extra: []string{"udp [2607:f740:b::f93]:0<->[2001:470:1f11:81f:d138:5f55:6d4:1fe2]:0 1/404 0/0"}},
	"tcpflow__samplePcaps_jpegs.cap": {why: orphanWhy,
		extra: []string{"tcp 209.225.0.6:0<->10.1.1.101:0 18/13860 0/0", "tcp 209.225.11.237:0<->10.1.1.101:0 1/770 0/0"}},
	"derived__dns_udp_absurd-caplen-rec2.pcap": {why: "the record before the corrupt one is listed; tshark prints no table when reading fails",
		extra: []string{"udp 192.168.1.11:43966<->209.87.249.18:53 1/98 0/0"}},
	"zeek__tcp_truncated-header.pcap": {why: truncWhy,
		ours: []string{"tcp 201.186.157.67:60827<->128.3.26.249:25 10/712 14/1281"}},
	"tcpflow__simson.pcap": {why: truncWhy,
		extra: []string{
			"tcp 69.163.129.236:80<->192.168.1.142:63856 1/54 0/0", "tcp 69.163.129.236:80<->192.168.1.142:63857 1/54 0/0",
			"tcp 69.163.129.236:80<->192.168.1.142:63858 56/75950 0/0", "tcp 69.163.129.236:80<->192.168.1.142:63859 12/11127 0/0",
			"tcp 69.163.129.236:80<->192.168.1.142:63860 104/149634 0/0", "tcp 69.163.129.236:80<->192.168.1.142:63861 42/57748 0/0",
			"tcp 69.163.129.236:80<->192.168.1.142:63862 12/13492 0/0", "tcp 69.163.129.236:80<->192.168.1.142:63863 40/52523 0/0",
			"tcp 69.163.129.236:80<->192.168.1.142:63864 23/27473 0/0", "tcp 69.163.129.236:80<->192.168.1.142:63865 12/13709 0/0"}},
}

const (
	truncWhy  = "a snaplen that cuts a TCP header after the ports: tshark drops such segments from its table, we key them by the ports that were captured"
	fragWhy   = "tshark counts a reassembled datagram once, in the frame that completes it; we count every fragment in its datagram's flow"
	orphanWhy = "a fragment whose first fragment is not in the capture has no ports: we keep it in a flow with ports 0, tshark in no TCP/UDP conversation"
)

// notDecapsulated lists tunnel captures whose inner conversations tshark
// shows and pcapflow does not (yet): only their outer flows are compared.
var notDecapsulated = map[string]bool{}

func TestConversationsMatchTshark(t *testing.T) {
	dir := corpus.Dir(t)
	for _, e := range corpus.Manifest(t) {
		t.Run(e.File, func(t *testing.T) {
			m, _ := index.Scan(context.Background(), []string{filepath.Join(dir, e.File)}, index.ScanOptions{})
			if m == nil {
				t.Fatal("no result")
			}
			ours := conversations(t, m)
			var theirs []convRow
			for _, r := range corpus.ReadTSV(t, filepath.Join(dir, "expected", e.File+".conv.tsv")) {
				pa, _ := strconv.Atoi(r["port_a"])
				pb, _ := strconv.Atoi(r["port_b"])
				fab, _ := strconv.Atoi(r["frames_a_to_b"])
				fba, _ := strconv.Atoi(r["frames_b_to_a"])
				theirs = append(theirs, convRow{r["proto"], endpoint(r["addr_a"], pa), endpoint(r["addr_b"], pb), fab, fba, r["bytes_a_to_b"], r["bytes_b_to_a"]})
			}
			if notDecapsulated[e.File] {
				theirs = outerOnly(theirs, ours)
			}
			compareConvs(t, e.File, ours, theirs)
		})
	}
}

func convEqual(a, b convRow) bool {
	if a.a != b.a {
		b = b.flipped()
	}
	if a.a != b.a || a.framesAB != b.framesAB || a.framesBA != b.framesBA {
		return false
	}
	n1, _ := strconv.ParseUint(a.bytesAB, 10, 64)
	n2, _ := strconv.ParseUint(a.bytesBA, 10, 64)
	return bytesMatch(n1, b.bytesAB) && bytesMatch(n2, b.bytesBA)
}

func compareConvs(t *testing.T, file string, ours, theirs []convRow) {
	dev := convDeviations[file]
	group := func(rows []convRow) map[string][]convRow {
		m := map[string][]convRow{}
		for _, r := range rows {
			m[r.key()] = append(m[r.key()], r)
		}
		return m
	}
	og, tg := group(ours), group(theirs)
	var keys []string
	for k := range og {
		keys = append(keys, k)
	}
	for k := range tg {
		if og[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	devOurs := map[string]bool{}
	for _, s := range dev.ours {
		devOurs[s] = true
	}
	devExtra := map[string]bool{}
	for _, s := range dev.extra {
		devExtra[s] = true
	}
	for _, k := range keys {
		o, th := og[k], tg[k]
		if len(th) == 0 && len(o) > 0 {
			for _, a := range o {
				if !devExtra[a.String()] {
					t.Errorf("conversation only we have: %v", a)
				}
				delete(devExtra, a.String())
			}
			continue
		}
		if len(o) != len(th) {
			t.Errorf("%s: %d conversations with our flows, tshark has %d:\n ours   %v\n tshark %v", k, len(o), len(th), o, th)
			continue
		}
		// Several rows on one key are port reuse: pair them up by counts.
		used := make([]bool, len(th))
		for _, a := range o {
			found := -1
			for j, b := range th {
				if !used[j] && convEqual(a, b) {
					found = j
					break
				}
			}
			switch {
			case found >= 0:
				used[found] = true
				if devOurs[a.String()] {
					t.Errorf("listed deviation no longer differs: %v", a)
				}
			case devOurs[a.String()]:
				for j := range th {
					if !used[j] {
						used[j] = true
						break
					}
				}
			default:
				t.Errorf("conversation differs:\n ours   %v\n tshark %v", a, th)
			}
			delete(devOurs, a.String())
		}
	}
	for s := range devOurs {
		t.Errorf("listed deviation not seen: %s", s)
	}
	for s := range devExtra {
		t.Errorf("listed extra conversation not seen: %s", s)
	}
}

// outerOnly drops tshark rows whose endpoints none of our flows has.
func outerOnly(theirs, ours []convRow) []convRow {
	have := map[string]bool{}
	for _, r := range ours {
		have[r.key()] = true
	}
	var out []convRow
	for _, r := range theirs {
		if have[r.key()] {
			out = append(out, r)
		}
	}
	return out
}
