package index_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// outliving is a capture whose flows mostly outlive their blocks, as an
// archive's UDP flows do: a burst of DNS-like exchanges, each its own
// pair of flows, live until the idle timeout; long TCP connections that
// send now and then; and short connections that keep IDs coming, so that
// the blocks of the first flows are sealed while those are live. With
// idle 20 s, the exchanges end within the capture; the connections end
// with FINs after their blocks were written.
func outliving(seed uint64) []byte {
	c := capgen.New(capgen.Start)
	r := rand.New(rand.NewPCG(seed, 3))
	ep := func(ip string, port uint16) capgen.Endpoint {
		return capgen.Endpoint{MAC: capgen.MAC(byte(port)), IP: netip.MustParseAddr(ip), Port: port}
	}
	udp := func(from, to capgen.Endpoint, payload []byte) {
		f := capgen.Frame{SrcMAC: from.MAC, DstMAC: to.MAC, Src: from.IP, Dst: to.IP, Proto: layers.IPProtocolUDP,
			SrcPort: from.Port, DstPort: to.Port, Payload: payload}
		c.Add(f.Bytes())
	}
	srv := ep("192.0.2.53", 53)
	for i := 0; i < 1500; i++ { // IDs of more than one span (lateSpan)
		cli := ep(fmt.Sprintf("10.2.%d.%d", i/200, 1+i%200), uint16(20000+r.IntN(40000)))
		udp(cli, srv, capgen.Text(fmt.Sprintf("q%d", i), 30+r.IntN(40)))
		if i%7 != 0 { // some go unanswered
			udp(srv, cli, capgen.Text(fmt.Sprintf("a%d", i), 60+r.IntN(200)))
		}
	}
	var long []*capgen.TCPConn
	for i := 0; i < 5; i++ {
		t := c.NewTCP(ep(fmt.Sprintf("10.3.0.%d", i+1), uint16(41000+i)), ep("192.0.2.80", 443), r.Uint32(), r.Uint32())
		t.Handshake()
		long = append(long, t)
	}
	c.Step = 50 * int64(time.Millisecond)
	for tick := 0; tick < 600; tick++ { // 30 s
		if tick%10 == 0 {
			for i, t := range long {
				if tick/10 < 20+i {
					t.Data(true, capgen.Text(fmt.Sprintf("l%dt%d", i, tick), 100+r.IntN(400)))
					t.Ack(false)
				}
			}
		}
		if tick%20 == 0 && tick/20 < 20 {
			long[tick/20%len(long)].Data(false, capgen.Text("x", 50))
		}
		s := c.NewTCP(ep("10.4.0.1", uint16(30000+tick)), ep("192.0.2.80", 80), r.Uint32(), r.Uint32())
		s.Handshake()
		s.Data(true, []byte("GET / HTTP/1.1\r\n\r\n"))
		s.Data(false, capgen.Text(fmt.Sprint(tick), 300))
		s.Close()
	}
	for _, t := range long {
		t.Close()
	}
	var b bytes.Buffer
	c.WritePcap(&b, capgen.PcapOptions{Nanos: true})
	return b.Bytes()
}

// Flows that outlive their block are stored in groups, a block's flows
// that end together in one: the index answers what a scan does, with far
// fewer keys than flows stored late, however the groups are cut; and in
// an archive grown a file at a time, flows live at one commit (N) and
// ended in the next run are found in that run's groups.
func TestFlowsStoredLate(t *testing.T) {
	paths := shiftedCopies(t, outliving(1), 2, time.Hour)
	want := map[int]string{}
	for n := 1; n <= 2; n++ {
		m, err := index.Scan(context.Background(), paths[:n], index.ScanOptions{KeepPackets: true})
		if err != nil {
			t.Fatal(err)
		}
		want[n] = string(jsonOf(t, m)) + fmt.Sprint(packets(t, m))
		m.Close()
	}
	for _, tc := range []struct {
		name  string
		flush int // flows held before the groups are written; 0: lateFlush
		runs  bool
	}{
		{"one run", 0, false},
		{"small groups", 5, false},
		{"a run per file", 0, true},
		{"a run per file, small groups", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "idx")
			var o index.Options
			if tc.flush > 0 {
				index.SetLateFlush(&o, tc.flush)
			}
			batches := [][]string{paths}
			if tc.runs {
				batches = [][]string{paths[:1], paths[1:]}
			}
			got := 0
			for _, b := range batches {
				if _, err := index.Build(context.Background(), dir, b, o); err != nil {
					t.Fatal(err)
				}
				got += len(b)
				s, err := index.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				ans := string(jsonOf(t, s)) + fmt.Sprint(packets(t, s))
				late, groups, alone := index.StoredLate(s)
				s.Close()
				if ans != want[got] {
					t.Fatalf("after %d files: the index does not answer what the scan does", got)
				}
				t.Logf("after %d files: %d flows stored late in %d groups, %d alone while live", got, late, groups, alone)
				if got == 2 && late < 3000 {
					t.Fatalf("%d flows stored late: the capture does not test what it should", late)
				}
				if tc.flush == 0 && late > 0 && groups*10 > late {
					t.Errorf("%d groups for %d flows stored late", groups, late)
				}
			}
		})
	}
}

// A run that fails after writing groups of flows stored late leaves the
// index answering the archive before it; the next run completes it.
func TestFlowsStoredLateWriteFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: many index runs")
	}
	paths := shiftedCopies(t, outliving(2), 2, time.Hour)
	ref := t.TempDir()
	old, full := filepath.Join(ref, "old"), filepath.Join(ref, "new")
	for _, b := range []struct {
		dir   string
		paths []string
	}{{old, paths[:1]}, {full, paths}} {
		if _, err := index.Build(context.Background(), b.dir, b.paths, index.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	oldAns, newAns := answers(t, old), answers(t, full)
	count := &faults{n: -1}
	dir := filepath.Join(t.TempDir(), "idx")
	copyDir(t, old, dir)
	if err := buildWith(t, dir, paths[1:], count, 0); err != nil {
		t.Fatal(err)
	}
	writes := count.seen.Load()
	var outcomes []string
	for n := int64(0); n < writes; n += max(1, writes/20) {
		f := &faults{n: n, sticky: true}
		dir := filepath.Join(t.TempDir(), "idx")
		copyDir(t, old, dir)
		err := buildWith(t, dir, paths[1:], f, 0)
		got := answers(t, dir)
		switch {
		case got == oldAns && err != nil:
			outcomes = append(outcomes, "old")
		case got == newAns:
			outcomes = append(outcomes, "new")
		default:
			t.Fatalf("%v (err %v): the index answers neither the old nor the new archive", f, err)
		}
		if _, err := index.Build(context.Background(), dir, paths[1:], index.Options{}); err != nil {
			t.Fatalf("%v: the run after the fault: %v", f, err)
		}
		if answers(t, dir) != newAns {
			t.Fatalf("%v: after a run without faults the index is not the new archive", f)
		}
	}
	if !slices.Contains(outcomes, "old") {
		t.Errorf("no fault made the run fail: %v", outcomes)
	}
}

// An add that touches few of the flows live at the last commit leaves
// their groups (N) as they were, and the archive answers what one run
// over its files does; with the package's check that a group taken as
// unchanged is, and without it, as users run.
func TestLiveGroupsKept(t *testing.T) {
	data := outliving(3)
	// The next file: the first packet again (a UDP query of the first
	// exchange) a second after the last.
	r, err := pcapio.NewReader(bytes.NewReader(data), "x")
	if err != nil {
		t.Fatal(err)
	}
	var first, rec pcapio.Record
	var last int64
	for n := 0; r.Next(&rec) == nil; n++ {
		if n == 0 {
			first = rec
			first.Data = slices.Clone(rec.Data)
		}
		last = rec.Timestamp
	}
	var b bytes.Buffer
	w, _ := pcapio.NewPcapWriter(&b, first.LinkType, 65535, true)
	w.WritePacket(last+int64(time.Second), first.Data, first.OrigLen)
	dir := t.TempDir()
	parts := []string{filepath.Join(dir, "x.pcap"), filepath.Join(dir, "x.pcap1")}
	os.WriteFile(parts[0], data, 0o644)
	os.WriteFile(parts[1], b.Bytes(), 0o644)
	once := build(t, filepath.Join(t.TempDir(), "once"), parts...)
	_, _, live := index.StoredLate(once)
	for _, verify := range []bool{true, false} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			index.SetVerifyUnchanged(verify)
			defer index.SetVerifyUnchanged(true)
			dir := filepath.Join(t.TempDir(), "runs")
			if _, err := index.Build(context.Background(), dir, parts[:1], index.Options{}); err != nil {
				t.Fatal(err)
			}
			s, err := index.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, _, alone := index.StoredLate(s)
			s.Close()
			res, err := index.Build(context.Background(), dir, parts[1:], index.Options{})
			if err != nil {
				t.Fatal(err)
			}
			runs, err := index.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer runs.Close()
			_, _, after := index.StoredLate(runs)
			// The groups (of up to 64 flows) of the untouched flows stand:
			// all but the one or two of the first exchange's block.
			t.Logf("%d flows live and alone, %d after the add (%d in one run); %d values kept", alone, after, live, index.Kept(res))
			if alone < 2000 || after != live {
				t.Fatalf("%d flows live and alone, %d after the add, %d in one run", alone, after, live)
			}
			if min := alone/flowsPerGroup - 3; index.Kept(res) < min {
				t.Errorf("%d values kept, want at least %d", index.Kept(res), min)
			}
			if got, want := string(jsonOf(t, runs))+fmt.Sprint(packets(t, runs)), string(jsonOf(t, once))+fmt.Sprint(packets(t, once)); got != want {
				t.Fatal("the archive grown a file at a time does not answer what one run does")
			}
		})
	}
}

const flowsPerGroup = 64
