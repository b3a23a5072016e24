package index_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/klauspost/compress/gzip"
	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
	"github.com/pcapflow/pcapflow/reasm"
)

// rotation builds a capture whose every cut into files is a case an
// archive must get right: connections that begin before a cut and end
// after it (one cut falls mid-handshake), a retransmission on the other
// side of a cut from its original, a FIN in the next file, a fragment
// train across files, a port reused right after a cut, UDP and ICMP
// conversations that go on.
func rotation() *capgen.Capture {
	c := capgen.New(capgen.Start)
	r := rand.New(rand.NewPCG(7, 7))
	ep := func(ip string, port uint16) capgen.Endpoint {
		return capgen.Endpoint{MAC: capgen.MAC(byte(port)), IP: netip.MustParseAddr(ip), Port: port}
	}
	var conns []*capgen.TCPConn
	for i := 0; i < 6; i++ {
		a := ep(fmt.Sprintf("10.1.0.%d", i+1), uint16(40000+i))
		b := ep("192.0.2.80", 80)
		if i%3 == 2 {
			a = ep(fmt.Sprintf("2001:db8::%d", i+1), uint16(40000+i))
			b = ep("2001:db8::80", 80)
		}
		conns = append(conns, c.NewTCP(a, b, r.Uint32(), r.Uint32()))
	}
	for _, t := range conns {
		t.Send(true, 0x02, nil) // SYNs first: cuts fall between SYN and SYN-ACK
	}
	for _, t := range conns {
		t.Send(false, 0x12, nil)
		t.Send(true, 0x10, nil)
	}
	udp := func(from, to capgen.Endpoint, payload string) {
		f := capgen.Frame{SrcMAC: from.MAC, DstMAC: to.MAC, Src: from.IP, Dst: to.IP, Proto: layers.IPProtocolUDP,
			SrcPort: from.Port, DstPort: to.Port, Payload: []byte(payload)}
		c.Add(f.Bytes())
	}
	dnsC, dnsS := ep("10.1.0.9", 5353), ep("192.0.2.53", 53)
	for round := 0; round < 12; round++ {
		for i, t := range conns {
			if round > 8 && i%2 == 0 {
				continue
			}
			seq := t.NextA
			payload := capgen.Text(fmt.Sprintf("c%dr%d", i, round), 200+r.IntN(900))
			t.Data(true, payload)
			if round%4 == 1 && i == 1 {
				t.Raw(true, 0x18, seq, payload) // a retransmission
			}
			t.Data(false, capgen.Text(fmt.Sprintf("s%dr%d", i, round), 300+r.IntN(1100)))
		}
		udp(dnsC, dnsS, fmt.Sprintf("query %d", round))
		udp(dnsS, dnsC, fmt.Sprintf("answer %d", round))
		if round == 5 {
			// A fragmented datagram, its fragments in order across a cut.
			f := capgen.Frame{SrcMAC: capgen.MAC(3), DstMAC: capgen.MAC(4), Src: netip.MustParseAddr("10.1.0.20"),
				Dst: netip.MustParseAddr("192.0.2.20"), Proto: layers.IPProtocolUDP, SrcPort: 7000, DstPort: 7001,
				Payload: capgen.Text("big datagram", 3000), IPID: 77}
			for _, fr := range capgen.Fragments4(&f, 800) {
				c.Add(fr)
			}
		}
	}
	// Half the connections end: a FIN each way, then the last ACK.
	for i, t := range conns {
		if i%2 == 0 {
			t.Send(true, 0x11, nil)
			t.Send(false, 0x11, nil)
			t.Send(true, 0x10, nil)
		}
	}
	// Port reuse: connection 0's 4-tuple again, a new handshake.
	again := c.NewTCP(conns[0].A, conns[0].B, r.Uint32(), r.Uint32())
	again.Handshake()
	again.Data(true, []byte("GET /again HTTP/1.1\r\n\r\n"))
	again.Data(false, capgen.Text("again", 700))
	again.Close()
	// The others end now.
	for i, t := range conns {
		if i%2 == 1 {
			t.Close()
		}
	}
	return c
}

// writeParts writes the capture cut before each packet index in cuts,
// as x.pcap, x.pcap1, x.pcap2... (tcpdump -C names), gzip-compressed
// when gz is set.
func writeParts(t *testing.T, c *capgen.Capture, cuts []int, gz bool) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	bounds := append(append([]int{0}, cuts...), len(c.Packets))
	for i := 0; i+1 < len(bounds); i++ {
		part := &capgen.Capture{Packets: c.Packets[bounds[i]:bounds[i+1]]}
		var b bytes.Buffer
		part.WritePcap(&b, capgen.PcapOptions{})
		name := "x.pcap"
		if i > 0 {
			name += fmt.Sprint(i)
		}
		data := b.Bytes()
		if gz {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(data)
			zw.Close()
			data, name = z.Bytes(), name+".gz"
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// flowsOf lists an archive's flows as JSON without the capture name, which
// names a flow's first file.
func flowsOf(t *testing.T, r index.Reader) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(jsonOf(t, r))), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "capture")
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

// streamsOf reassembles every flow's stream, by flow ID.
func streamsOf(t *testing.T, r index.Reader) map[uint64]string {
	t.Helper()
	out := map[uint64]*bytes.Buffer{}
	var ids []uint64
	var depths = map[uint64]uint8{}
	r.Flows(context.Background(), nil, func(f *flow.Flow) error {
		ids = append(ids, f.ID)
		depths[f.ID] = f.Depth
		return nil
	})
	a := reasm.NewAssembler(reasm.Policy{}, func(id uint64, _ uint8) reasm.Sink {
		b := &bytes.Buffer{}
		out[id] = b
		return reasm.SinkFunc(func(_ int64, p []byte) error { b.Write(p); return nil })
	}, nil)
	for id, d := range depths {
		a.SetDepth(id, d)
	}
	err := index.Records(context.Background(), r, ids, func(_ int, id uint64, rec *pcapio.Record) error { return a.Record(id, rec) })
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	s := map[uint64]string{}
	for id, b := range out {
		s[id] = b.String()
	}
	return s
}

func scanOf(t *testing.T, paths ...string) *index.Mem {
	t.Helper()
	m, err := index.Scan(context.Background(), paths, index.ScanOptions{KeepPackets: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// A connection that crosses a file rotation is one flow per direction,
// with the packets, counters, state and stream of the unsplit capture:
// in a scan of the files, in an index of them all, and in an index that
// got them one per run; gzip-compressed files alike.
func TestRotatedArchive(t *testing.T) {
	c := rotation()
	whole := writeParts(t, c, nil, false)
	wantFlows := flowsOf(t, scanOf(t, whole...))
	wantStreams := streamsOf(t, scanOf(t, whole...))
	n := len(c.Packets)
	check := func(what string, r index.Reader) {
		t.Helper()
		if got := flowsOf(t, r); !slices.Equal(got, wantFlows) {
			t.Errorf("%s: flows differ from the unsplit capture's:\n%s", what, diffLines(got, wantFlows))
			return
		}
		if got := streamsOf(t, r); fmt.Sprint(got) != fmt.Sprint(wantStreams) {
			t.Errorf("%s: streams differ from the unsplit capture's", what)
		}
	}
	// Every single cut, in a scan.
	for cut := 1; cut < n; cut++ {
		check(fmt.Sprintf("scan cut at %d", cut), scanOf(t, writeParts(t, c, []int{cut}, false)...))
	}
	// Many files, in every mode.
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 6; trial++ {
		var cuts []int
		for _, x := range r.Perm(n - 1)[:3+trial*3] {
			cuts = append(cuts, x+1)
		}
		slices.Sort(cuts)
		gz := trial%2 == 1
		parts := writeParts(t, c, cuts, gz)
		what := fmt.Sprintf("%d files (gzip %v)", len(parts), gz)
		// Given in the wrong order: captures are taken by time.
		shuffled := slices.Clone(parts)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		check(what+", scan", scanOf(t, shuffled...))
		check(what+", one index run", build(t, filepath.Join(t.TempDir(), "all"), shuffled...))
		idx := filepath.Join(t.TempDir(), "runs")
		for _, p := range parts {
			build(t, idx, p).Close()
		}
		check(what+", one run per file", build(t, idx, parts...))
		// And the directory, whose files are captures whatever their names.
		check(what+", the directory", scanOf(t, filepath.Dir(parts[0])))
	}
}

func diffLines(got, want []string) string {
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "", ""
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			fmt.Fprintf(&b, "got  %s\nwant %s\n", g, w)
		}
	}
	return b.String()
}

// shiftedCopies writes n copies of a pcap, copy i with its times moved
// by i*shift.
func shiftedCopies(t testing.TB, data []byte, n int, shift time.Duration) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for i := 0; i < n; i++ {
		r, err := pcapio.NewReader(bytes.NewReader(data), "copy")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		var w *pcapio.PcapWriter
		var rec pcapio.Record
		for r.Next(&rec) == nil {
			if w == nil {
				w, _ = pcapio.NewPcapWriter(&b, rec.LinkType, 65535, true)
			}
			w.WritePacket(rec.Timestamp+int64(i)*int64(shift), rec.Data, rec.OrigLen)
		}
		p := filepath.Join(dir, fmt.Sprintf("copy%d.pcap", i))
		os.WriteFile(p, b.Bytes(), 0o644)
		out = append(out, p)
	}
	return out
}

// Adding captures one per run in time order gives the same index as
// adding them at once; a capture older than the archive's end is refused
// and changes nothing.
func TestIncrementalAdd(t *testing.T) {
	paths := shiftedCopies(t, capgen.Files()[0].Make(), 3, 30*time.Second)
	all := build(t, filepath.Join(t.TempDir(), "all"), paths...)
	idx := filepath.Join(t.TempDir(), "inc")
	for _, p := range paths {
		build(t, idx, p).Close()
	}
	inc := build(t, idx)
	if a, b := jsonOf(t, inc), jsonOf(t, all); !bytes.Equal(a, b) {
		t.Fatalf("one per run:\n%s\nat once:\n%s", a, b)
	}
	if a, b := packets(t, inc), packets(t, all); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("packets differ")
	}
	// The copies 30 s apart continue each other's connections: fewer
	// flows than three separate captures have.
	one := scanOf(t, paths[0])
	if inc.NumFlows() >= 3*one.NumFlows() {
		t.Errorf("%d flows in three copies 30 s apart, one copy has %d: connections did not continue", inc.NumFlows(), one.NumFlows())
	}
	older := shiftedCopies(t, capgen.Files()[0].Make(), 1, -time.Hour)
	before := jsonOf(t, inc)
	inc.Close()
	if _, err := index.Build(context.Background(), idx, older, index.Options{}); err == nil || !strings.Contains(err.Error(), "older than the end of the archive") {
		t.Fatalf("adding an older capture: %v", err)
	}
	if got := jsonOf(t, build(t, idx)); !bytes.Equal(got, before) {
		t.Error("the refused capture changed the index")
	}
}

// A flow's postings are cut into full chunks of 1024 packets and a tail,
// and the index stores neither count: both follow from the flow's packet
// count. Flows that end a capture on a chunk boundary, one short of it
// or one past it, and go on in the next file, must keep every packet:
// in one index run of the files, in one run per file, and against a scan
// of the unsplit capture.
func TestChunkBoundaries(t *testing.T) {
	c := capgen.New(capgen.Start)
	type side struct{ a, b int } // packets before and after the cut
	sides := []side{{1024, 1024}, {1023, 1}, {1, 1023}, {1025, 1023}, {2048, 0}, {0, 2048}, {0, 1}}
	send := func(i int) { addUDP(c, "10.9.0.1", uint16(5000+i)) }
	interleave := func(counts []int) {
		for more := true; more; {
			more = false
			for i := range counts {
				if counts[i] > 0 {
					send(i)
					counts[i]--
					more = true
				}
			}
		}
	}
	var before, after []int
	for _, s := range sides {
		before, after = append(before, s.a), append(after, s.b)
	}
	interleave(before)
	cut := len(c.Packets)
	interleave(after)

	whole := writeParts(t, c, nil, false)
	parts := writeParts(t, c, []int{cut}, false)
	wantFlows := flowsOf(t, scanOf(t, whole...))
	unsplit := build(t, filepath.Join(t.TempDir(), "whole"), whole...)
	all := make([]uint64, unsplit.NumFlows())
	for i := range all {
		all[i] = uint64(i + 1)
	}
	wantRecords := extractAll(t, unsplit, all)
	if min := 24 + len(c.Packets)*(16+43); len(wantRecords) < min {
		t.Fatalf("%d bytes extracted from %d packets", len(wantRecords), len(c.Packets))
	}
	for _, f := range wantFlows {
		if !strings.Contains(f, `"packets":`) {
			t.Fatalf("no packet count in %s", f)
		}
	}
	once := build(t, filepath.Join(t.TempDir(), "once"), parts...)
	runs := filepath.Join(t.TempDir(), "runs")
	for _, p := range parts {
		build(t, runs, p).Close()
	}
	perFile := build(t, runs)
	for _, tc := range []struct {
		what string
		r    index.Reader
	}{{"the unsplit capture", unsplit}, {"one run of both files", once}, {"one run per file", perFile}} {
		if got := flowsOf(t, tc.r); !slices.Equal(got, wantFlows) {
			t.Errorf("%s: flows differ from the scan's:\n%s", tc.what, diffLines(got, wantFlows))
		}
		if got := extractAll(t, tc.r, all); !bytes.Equal(got, wantRecords) {
			t.Errorf("%s: the extracted records differ (%d bytes, want %d)", tc.what, len(got), len(wantRecords))
		}
	}
	if a, b := packets(t, once), packets(t, perFile); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("one run and one run per file give different packets")
	}
	var total int
	for id, refs := range packets(t, once) {
		total += len(refs)
		if len(refs) == 0 {
			t.Errorf("flow %d: no packets", id)
		}
	}
	if total != len(c.Packets) {
		t.Errorf("%d packets in the flows' postings, the capture has %d", total, len(c.Packets))
	}
}

// A commit leaves the provisional keys of live flows that did not change
// as they are. Adding a file in which few of many live flows go on
// rewrites little, and the archive still answers what one run over both
// files answers, down to the records extracted; a flow changed only by
// its peer's packet is written again.
func TestUnchangedLiveFlowsKept(t *testing.T) {
	c := capgen.New(capgen.Start)
	send := func(i int) { addUDP(c, "10.8.0.1", uint16(6000+i)) }
	// 319 UDP flows, live until their idle timeout, and a TCP SYN (flow
	// 320): five blocks of 64 IDs.
	for round := 0; round < 3; round++ {
		for i := 0; i < 319; i++ {
			send(i)
		}
	}
	tcp := c.NewTCP(capgen.Endpoint{MAC: capgen.MAC(3), IP: netip.MustParseAddr("10.8.0.3"), Port: 41000},
		capgen.Endpoint{MAC: capgen.MAC(4), IP: netip.MustParseAddr("10.8.1.4"), Port: 80}, 1000, 5000)
	tcp.Send(true, 0x02, nil)
	cut := len(c.Packets)
	// The next file: packets of flow 7, and the SYN-ACK. That one starts
	// flow 321 in a new block, and changes flow 320 (its peer, state and
	// history) without a packet of its own: its block must be written.
	for n := 0; n < 5; n++ {
		send(7)
	}
	tcp.Send(false, 0x12, nil)
	parts := writeParts(t, c, []int{cut}, false)
	once := build(t, filepath.Join(t.TempDir(), "once"), parts...)
	// The package's tests encode what is taken as unchanged and compare;
	// users' runs skip it.
	for _, verify := range []bool{true, false} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			index.SetVerifyUnchanged(verify)
			defer index.SetVerifyUnchanged(true)
			checkKept(t, parts, once)
		})
	}
}

func checkKept(t *testing.T, parts []string, once *index.Store) {
	dir := filepath.Join(t.TempDir(), "runs")
	if _, err := index.Build(context.Background(), dir, parts[:1], index.Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := index.Build(context.Background(), dir, parts[1:], index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Live != 321 {
		t.Fatalf("%d flows live after the second file, want 321", res.Live)
	}
	// Flow 7's block changed, and flow 320's records (not its postings);
	// the three blocks between did not, their records and tails left as
	// they were.
	if got := index.Kept(res); got != 7 {
		t.Errorf("%d provisional values left unchanged, want 7 (3 blocks' records and tails, and flow 320's block's tails)", got)
	}
	runs, err := index.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer runs.Close()
	if got, want := flowsOf(t, runs), flowsOf(t, once); !slices.Equal(got, want) {
		t.Fatalf("flows differ from one run's:\n%s", diffLines(got, want))
	}
	all := make([]uint64, once.NumFlows())
	for i := range all {
		all[i] = uint64(i + 1)
	}
	if got, want := extractAll(t, runs, all), extractAll(t, once, all); !bytes.Equal(got, want) {
		t.Errorf("the extracted records differ (%d bytes, want %d)", len(got), len(want))
	}
	if a, b := packets(t, runs), packets(t, once); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the postings differ from one run's")
	}
}

// A flow that starts in the last block of an earlier run's IDs changes
// that block, though none of its earlier flows got a packet: the block is
// written again with it. Flows that end by their idle timeout while the
// next file is read, with no packet, come out as one run over both files
// says, too.
func TestNewFlowInRestoredBlock(t *testing.T) {
	for _, idle := range []bool{false, true} {
		c := capgen.New(capgen.Start)
		send := func(port uint16) { addUDP(c, "10.7.0.1", port) }
		for i := uint16(0); i < 10; i++ {
			send(7000 + i)
		}
		cut := len(c.Packets)
		if idle {
			// Past the idle timeout: the first ten end by it.
			c.Clock += int64(flow.DefaultIdleTimeout) + int64(time.Minute)
		}
		send(8000) // flow 11, in block 1 with the ten
		parts := writeParts(t, c, []int{cut}, false)
		once := build(t, filepath.Join(t.TempDir(), "once"), parts...)
		for _, verify := range []bool{true, false} {
			t.Run(fmt.Sprintf("idle=%v,verify=%v", idle, verify), func(t *testing.T) {
				index.SetVerifyUnchanged(verify)
				defer index.SetVerifyUnchanged(true)
				dir := filepath.Join(t.TempDir(), "runs")
				for _, p := range parts {
					if _, err := index.Build(context.Background(), dir, []string{p}, index.Options{}); err != nil {
						t.Fatal(err)
					}
				}
				runs, err := index.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer runs.Close()
				if runs.NumFlows() != 11 {
					t.Fatalf("%d flows, want 11", runs.NumFlows())
				}
				if got, want := flowsOf(t, runs), flowsOf(t, once); !slices.Equal(got, want) {
					t.Fatalf("flows differ from one run's:\n%s", diffLines(got, want))
				}
				if a, b := packets(t, runs), packets(t, once); fmt.Sprint(a) != fmt.Sprint(b) {
					t.Error("the postings differ from one run's")
				}
			})
		}
	}
}

// addUDP adds a one-byte datagram from src, port sport, to port 53 of the
// next address: each source port is a flow of its own.
func addUDP(c *capgen.Capture, src string, sport uint16) {
	from := netip.MustParseAddr(src)
	f := capgen.Frame{SrcMAC: capgen.MAC(1), DstMAC: capgen.MAC(2), Src: from, Dst: from.Next(),
		Proto: layers.IPProtocolUDP, SrcPort: sport, DstPort: 53, Payload: []byte{byte(sport)}}
	c.Add(f.Bytes())
}

// An index of another schema (the one before this, say) is refused, by
// readers and by a run that would add to it, with ErrSchema naming both
// versions, and the refused run changes nothing: it still says what it
// is. (Schema 4 listed paired responders under their own addresses and
// ports; schema 5 does not, and reads its lists otherwise.)
func TestOldSchemaRefused(t *testing.T) {
	paths := writeParts(t, rotation(), []int{40}, false)
	idx := filepath.Join(t.TempDir(), "old")
	build(t, idx, paths[0]).Close()
	if err := index.SetStoredVersion(idx, "pcapflow-index/5"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := index.Open(idx); !errors.Is(err, index.ErrSchema) || !strings.Contains(err.Error(), "pcapflow-index/5") || !strings.Contains(err.Error(), index.SchemaVersion) {
			t.Fatalf("open: %v, want %v naming both versions", err, index.ErrSchema)
		}
		if _, err := index.Build(context.Background(), idx, paths[1:], index.Options{}); !errors.Is(err, index.ErrSchema) {
			t.Fatalf("add: %v, want %v", err, index.ErrSchema)
		}
	}
}

// Lists longer than a chunk (maxListIDs) and dense: final-value lists
// (packets, bytes, last) of every flow, the protocol and port lists cut
// into chunks, the capture's in-capture list. The store answers as the
// scan does. (Gap-coding a final list of 70 k IDs once made every
// lookup of its bucket fail as corrupt on the 2 GB real capture.)
func TestLongDenseLists(t *testing.T) {
	c := capgen.New(capgen.Start)
	c.Step = 1000
	for i := 0; i < 70000; i++ {
		addUDP(c, []string{"10.1.0.1", "10.1.0.3"}[i/60000], uint16(1+i%60000))
	}
	paths := writeParts(t, c, nil, false)
	mem := scanOf(t, paths...)
	st := build(t, filepath.Join(t.TempDir(), "idx"), paths...)
	if st.NumFlows() != 70000 {
		t.Fatalf("%d flows, want 70000", st.NumFlows())
	}
	ctx := context.Background()
	for _, l := range []index.Lookup{
		{Field: index.FieldPackets, Lo: 0, Hi: 1},
		{Field: index.FieldBytes, Lo: 0, Hi: 1 << 20},
		{Field: index.FieldLast, Lo: 0, Hi: 1 << 62},
		{Field: index.FieldProto, Lo: 17, Hi: 17},
		{Field: index.FieldDstPort, Lo: 53, Hi: 53},
		{Field: index.FieldSrcPort, Lo: 1000, Hi: 1200},
	} {
		want, _, err := mem.Lookup(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := st.Lookup(ctx, l)
		if err != nil {
			t.Fatalf("%v: %v", l.Field, err)
		}
		var matched []uint64
		st.Flows(ctx, got, func(f *flow.Flow) error {
			if l.Matches(f) {
				matched = append(matched, f.ID)
			}
			return nil
		})
		if !slices.Equal(matched, want) || len(want) == 0 {
			t.Errorf("%v: store %d IDs, %d matching; scan %d", l.Field, len(got), len(matched), len(want))
		}
	}
	r, err := index.Restrict(ctx, st, []string{paths[0]})
	if err != nil || r.NumFlows() != 70000 {
		t.Fatalf("restricted to its one capture: %v flows, %v", r, err)
	}
}

// The mirror rule's edges: a responder right after its originator with
// the MACs swapped is only in the paired list; one whose MACs are not the
// swap (a routed reply), one that is not right after its originator, and
// a flow with no peer are listed as themselves. Every lookup of an
// address, port or MAC, either way, answers as the records say.
func TestMirroredResponders(t *testing.T) {
	c := capgen.New(capgen.Start)
	ep := func(mac byte, ip string, port uint16) capgen.Endpoint {
		return capgen.Endpoint{MAC: capgen.MAC(mac), IP: netip.MustParseAddr(ip), Port: port}
	}
	srv := ep(2, "192.0.2.1", 80)
	mirrored := c.NewTCP(ep(1, "10.0.0.1", 40000), srv, 100, 200)
	mirrored.Handshake()
	// A reply through another router: its source MAC is not the
	// originator's destination MAC.
	routed := c.NewTCP(ep(1, "10.0.0.2", 40001), srv, 300, 400)
	routed.Send(true, 0x02, nil)
	reply := capgen.Frame{SrcMAC: capgen.MAC(9), DstMAC: capgen.MAC(1), Src: srv.IP, Dst: netip.MustParseAddr("10.0.0.2"),
		Proto: layers.IPProtocolTCP, SrcPort: 80, DstPort: 40001, Flags: 0x12, Seq: 400, Ack: 301}
	c.Add(reply.Bytes())
	// A reply that comes after another connection has started.
	late := c.NewTCP(ep(1, "10.0.0.3", 40002), srv, 500, 600)
	late.Send(true, 0x02, nil)
	other := c.NewTCP(ep(1, "10.0.0.4", 40003), srv, 700, 800)
	other.Send(true, 0x02, nil)
	late.Send(false, 0x12, nil)
	other.Send(false, 0x12, nil)
	addUDP(c, "10.0.0.9", 5353) // no peer
	paths := writeParts(t, c, nil, false)
	st := build(t, filepath.Join(t.TempDir(), "idx"), paths...)
	var flows []flow.Flow
	st.Flows(context.Background(), nil, func(f *flow.Flow) error { flows = append(flows, *f); return nil })
	if len(flows) != 9 {
		t.Fatalf("%d flows, want 9", len(flows))
	}
	ctx := context.Background()
	for _, f := range flows {
		for _, l := range []index.Lookup{
			{Field: index.FieldSrcAddr, AddrLo: f.Key.SrcAddr(), AddrHi: f.Key.SrcAddr()},
			{Field: index.FieldDstAddr, AddrLo: f.Key.DstAddr(), AddrHi: f.Key.DstAddr()},
			{Field: index.FieldSrcPort, Lo: uint64(f.Key.SrcPort), Hi: uint64(f.Key.SrcPort)},
			{Field: index.FieldDstPort, Lo: uint64(f.Key.DstPort), Hi: uint64(f.Key.DstPort)},
			{Field: index.FieldSrcMAC, MAC: f.SrcMAC},
			{Field: index.FieldDstMAC, MAC: f.DstMAC},
		} {
			for _, either := range []bool{false, true} {
				l.Either = either
				var want []uint64
				for i := range flows {
					if l.Matches(&flows[i]) {
						want = append(want, flows[i].ID)
					}
				}
				got, _, err := st.Lookup(ctx, l)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("flow %d, %v (either %v): %v (%v), want %v", f.ID, l.Field, either, got, err, want)
				}
			}
		}
	}
}

// Options.Settle leaves the captures modified too recently for a later
// run, and with them every new capture after them in time order (taken
// now, one would make the one left older than the archive's end). The
// runs together give the index of one run over all the captures.
func TestSettle(t *testing.T) {
	paths := shiftedCopies(t, capgen.Files()[0].Make(), 3, time.Hour)
	old := time.Now().Add(-time.Hour)
	for _, p := range paths {
		os.Chtimes(p, old, old)
	}
	// The middle capture in time is still being written; the last one
	// is not, but comes after it.
	now := time.Now()
	os.Chtimes(paths[1], now, now)
	idx := filepath.Join(t.TempDir(), "idx")
	opts := index.Options{Settle: time.Minute}
	res, err := index.Build(context.Background(), idx, paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0].Name != "copy0.pcap" || !slices.Equal(res.Settling, paths[1:]) {
		t.Fatalf("first run: added %v, settling %v; want copy0.pcap added, the other two left", res.Added, res.Settling)
	}
	os.Chtimes(paths[1], old, old)
	res, err = index.Build(context.Background(), idx, paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 2 || len(res.Settling) != 0 || len(res.Skipped) != 1 {
		t.Fatalf("second run: added %v, settling %v, skipped %v; want the other two added", res.Added, res.Settling, res.Skipped)
	}
	st, err := index.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mem, err := index.Scan(context.Background(), paths, index.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonOf(t, st), jsonOf(t, mem); !bytes.Equal(got, want) {
		t.Errorf("two settled runs differ from a scan of all:\n%s\nwant\n%s", got, want)
	}
	// Nothing ready: nothing made.
	fresh := filepath.Join(t.TempDir(), "fresh")
	os.Chtimes(paths[0], now, now)
	if res, err := index.Build(context.Background(), fresh, paths[:1], opts); err != nil || len(res.Settling) != 1 {
		t.Errorf("all settling: %v, %+v", err, res)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("all settling: the index was made (%v)", err)
	}
}
