package index_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

// testCaptures returns the generated captures (written to a temp dir) and
// every readable corpus file.
func testCaptures(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, f := range capgen.Files() {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Make(), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if d := corpus.Find(); d != "" {
		for _, e := range corpus.Manifest(t) {
			if e.Packets > 0 {
				out = append(out, filepath.Join(d, e.File))
			}
		}
	} else {
		t.Log("corpus not found: testing generated captures only")
	}
	return out
}

func jsonOf(t *testing.T, r index.Reader) []byte {
	t.Helper()
	var b bytes.Buffer
	names := func(i int) string { return r.Captures()[i].Name }
	w, _ := flow.NewWriter(&b, flow.FormatJSON, &flow.WriterOptions{CaptureName: names})
	if err := r.Flows(context.Background(), nil, func(f *flow.Flow) error { return w.Write(f) }); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return b.Bytes()
}

func extractAll(t *testing.T, r index.Reader, ids []uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	layouts := index.Layouts(r)
	if _, err := index.Extract(context.Background(), r, ids, pcapio.NewCopier(&b, pcapio.OutputFormat(layouts), layouts), index.Window{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func build(t *testing.T, dir string, paths ...string) *index.Store {
	t.Helper()
	res, err := index.Build(context.Background(), dir, paths, index.Options{})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if len(res.Errors) > 0 {
		t.Logf("build: %v", res.Errors)
	}
	s, err := index.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// packets returns the records of every flow, as PacketsOf lists them.
func packets(t *testing.T, r index.Reader) map[uint64][]index.PacketRef {
	t.Helper()
	ids := make([]uint64, r.NumFlows())
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	out := map[uint64][]index.PacketRef{}
	err := r.PacketsOf(context.Background(), ids, func(id uint64, refs []index.PacketRef) error {
		out[id] = append([]index.PacketRef(nil), refs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The index answers exactly as a scan: the same flow records, the same
// packets, the same extracted bytes, for every capture.
func TestIndexEqualsScan(t *testing.T) {
	for _, path := range testCaptures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			mem, _ := index.Scan(context.Background(), []string{path}, index.ScanOptions{KeepPackets: true})
			st := build(t, filepath.Join(t.TempDir(), "idx"), path)
			if st.NumFlows() != mem.NumFlows() {
				t.Fatalf("index has %d flows, scan %d", st.NumFlows(), mem.NumFlows())
			}
			if a, b := jsonOf(t, st), jsonOf(t, mem); !bytes.Equal(a, b) {
				t.Fatalf("flows differ:\nindex:\n%s\nscan:\n%s", a, b)
			}
			pa, pb := packets(t, st), packets(t, mem)
			for id := uint64(1); id <= st.NumFlows(); id++ {
				if fmt.Sprint(pa[id]) != fmt.Sprint(pb[id]) {
					t.Fatalf("flow %d: index packets %v, scan %v", id, pa[id], pb[id])
				}
				if a, b := extractAll(t, st, []uint64{id}), extractAll(t, mem, []uint64{id}); !bytes.Equal(a, b) {
					t.Fatalf("flow %d: extraction differs", id)
				}
			}
		})
	}
}

// Extracting every flow gives back every packet of the capture that
// belongs to a flow, byte for byte, in order, each once.
func TestExtractAllFlowsRoundTrip(t *testing.T) {
	for _, path := range testCaptures(t) {
		if strings.HasSuffix(path, ".pcapng") {
			continue // pcapng output repeats section headers; compared record by record below
		}
		mem, _ := index.Scan(context.Background(), []string{path}, index.ScanOptions{KeepPackets: true})
		var ids []uint64
		mem.Flows(context.Background(), nil, func(f *flow.Flow) error {
			ids = append(ids, f.ID)
			return nil
		})
		out := extractAll(t, mem, ids)
		r, err := pcapio.NewReader(bytes.NewReader(out), "out")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var rec pcapio.Record
		n := uint64(0)
		for r.Next(&rec) == nil {
			n++
		}
		var want uint64
		for _, c := range mem.Captures() {
			want += c.Packets - c.NonIP
		}
		if n != want {
			t.Errorf("%s: extracted %d packets, the capture has %d in flows", filepath.Base(path), n, want)
		}
	}
}

func TestStaleCapture(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.pcap")
	data := capgen.Files()[0].Make()
	os.WriteFile(p, data, 0o644)
	idx := filepath.Join(dir, "c.pcap.pfidx")
	build(t, idx, p).Close()
	check := func() error {
		st, err := index.Open(idx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Check(); err != nil {
			return err
		}
		_, err = st.CapturePath(0)
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("fresh index: %v", err)
	}
	// A touch without change keeps the index usable.
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	if err := check(); err != nil {
		t.Fatalf("touched capture: %v", err)
	}
	cases := map[string][]byte{
		"truncated": data[:len(data)-1],
		"rewritten": func() []byte { b := append([]byte(nil), data...); b[len(b)-5] ^= 0xff; return b }(),
	}
	for name, b := range cases {
		os.WriteFile(p, b, 0o644)
		var se *index.StaleError
		if err := check(); !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a StaleError", name, err)
		}
	}
	// A capture moved away: the index still lists its flows (Check
	// passes), reading its packets names it.
	os.Remove(p)
	st, err := index.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("missing capture: Check: %v", err)
	}
	if _, err := st.CapturePath(0); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "c.pcap") {
		t.Errorf("missing capture: %v", err)
	}
}

// A capture that grew after it was indexed (tcpdump still writing it, a
// sensor's cron indexing its directory) is not stale: the index answers
// as before, for the bytes it read, and says that the capture grew.
// Growth that rewrote what was indexed is stale, as is any other change.
// An index run passes over the grown capture with that warning and adds
// the captures that are new.
func TestGrownCapture(t *testing.T) {
	c := capgen.New(capgen.Start)
	for i := range 400 {
		f := capgen.Frame{SrcMAC: capgen.MAC(1), DstMAC: capgen.MAC(2), Src: netip.MustParseAddr("10.9.0.1"),
			Dst: netip.MustParseAddr("10.9.0.2"), Proto: layers.IPProtocolUDP, SrcPort: uint16(2000 + i%7), DstPort: 53,
			Payload: []byte(capgen.Text(fmt.Sprint(i), 1000))}
		c.Add(f.Bytes())
	}
	var full bytes.Buffer
	if err := c.WritePcap(&full, capgen.PcapOptions{}); err != nil {
		t.Fatal(err)
	}
	data := full.Bytes()
	if len(data) < 3*index.IdentityBytes {
		t.Fatalf("capture of %d bytes: too small to have an unhashed middle", len(data))
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "live.pcap")
	cut := len(data) / 2 // mid-record, as a writer's buffered flush leaves it
	os.WriteFile(p, data[:cut], 0o644)
	idx := filepath.Join(dir, "idx")
	st := build(t, idx, p)
	before := jsonOf(t, st)
	st.Close()

	later := time.Now().Add(time.Hour)
	check := func(b []byte) (*index.Store, error) {
		t.Helper()
		os.WriteFile(p, b, 0o644)
		os.Chtimes(p, later, later)
		st, err := index.Open(idx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Check(); err != nil {
			st.Close()
			return nil, err
		}
		return st, nil
	}
	st, err := check(data)
	if err != nil {
		t.Fatalf("grown capture: %v", err)
	}
	if g := st.Grown(0); g != int64(len(data)) {
		t.Errorf("Grown = %d, want %d", g, len(data))
	}
	if got := jsonOf(t, st); !bytes.Equal(got, before) {
		t.Errorf("grown capture: the flows changed:\n%s\nwant\n%s", got, before)
	}
	if n := len(extractAll(t, st, []uint64{1, 2, 3})); n == 0 {
		t.Error("grown capture: nothing extracted")
	}
	st.Close()

	flip := func(at int) []byte {
		b := append([]byte(nil), data...)
		b[at] ^= 0xff
		return b
	}
	for name, b := range map[string][]byte{
		"grown, its head rewritten":                  flip(100),
		"grown, the end of what was indexed changed": flip(cut - 10),
		"shrunk":             data[:cut-1],
		"grown from nothing": append(make([]byte, cut), data[cut:]...),
	} {
		var se *index.StaleError
		if st, err := check(b); !errors.As(err, &se) {
			if st != nil {
				st.Close()
			}
			t.Errorf("%s: got %v, want a StaleError", name, err)
		}
	}

	// A capture that grows while it is indexed is read up to the size it
	// had when the run identified it: the index holds what that identity
	// describes, and says the capture grew.
	os.WriteFile(p, data[:cut], 0o644)
	idx2 := filepath.Join(dir, "idx2")
	index.SetKillPoint(func(point string) {
		if point == "capture-identified" {
			os.WriteFile(p, data, 0o644)
		}
	})
	st = build(t, idx2, p)
	index.SetKillPoint(func(string) {})
	if got := jsonOf(t, st); !bytes.Equal(got, before) {
		t.Errorf("grown while indexed: the flows are not those of the bytes identified:\n%s\nwant\n%s", got, before)
	}
	if err := st.Check(); err != nil {
		t.Errorf("grown while indexed: %v", err)
	}
	if c := st.Captures()[0]; c.Size != int64(cut) || st.Grown(0) != int64(len(data)) {
		t.Errorf("grown while indexed: size %d, grown to %d; want %d, %d", c.Size, st.Grown(0), cut, len(data))
	}
	st.Close()

	// An index run over the grown capture and a new one adds the new one
	// and warns about the grown one.
	os.WriteFile(p, data, 0o644)
	next := capgen.New(capgen.Start + 3600e9)
	f := capgen.Frame{SrcMAC: capgen.MAC(1), DstMAC: capgen.MAC(2), Src: netip.MustParseAddr("10.9.0.3"),
		Dst: netip.MustParseAddr("10.9.0.2"), Proto: layers.IPProtocolUDP, SrcPort: 3000, DstPort: 53, Payload: []byte("q")}
	next.Add(f.Bytes())
	var nb bytes.Buffer
	next.WritePcap(&nb, capgen.PcapOptions{})
	p2 := filepath.Join(dir, "next.pcap")
	os.WriteFile(p2, nb.Bytes(), 0o644)
	var warned []error
	res, err := index.Build(context.Background(), idx, []string{p, p2}, index.Options{Warn: func(err error) { warned = append(warned, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0].Name != "next.pcap" || len(res.Skipped) != 1 {
		t.Errorf("added %v, skipped %v: want next.pcap added, live.pcap skipped", res.Added, res.Skipped)
	}
	var ge *index.GrownError
	if len(warned) != 1 || !errors.As(warned[0], &ge) || ge.OldSize != int64(cut) || ge.NewSize != int64(len(data)) {
		t.Errorf("warnings %v: want one GrownError from %d to %d bytes", warned, cut, len(data))
	}
}

// A killed index run leaves the index answering what it answered before
// (nothing, for a new index: refused as incomplete); the next run drops
// what the killed one wrote and finishes.
func TestKilledIngest(t *testing.T) {
	if os.Getenv("PCAPFLOW_KILL_AT") != "" {
		index.SetKillPoint(func(p string) {
			if p == os.Getenv("PCAPFLOW_KILL_AT") {
				os.Exit(3) // no deferred cleanup, no final flush: as if killed
			}
		})
		_, err := index.Build(context.Background(), os.Getenv("PCAPFLOW_KILL_INDEX"), strings.Split(os.Getenv("PCAPFLOW_KILL_CAPTURES"), ","), index.Options{})
		fmt.Println("build returned", err)
		os.Exit(0)
	}
	paths := shiftedCopies(t, capgen.Files()[0].Make(), 3, time.Hour)
	want := func(paths ...string) []byte {
		mem, _ := index.Scan(context.Background(), paths, index.ScanOptions{})
		return jsonOf(t, mem)
	}
	for _, point := range []string{"dir-made", "lock-taken", "store-created", "building", "data-written", "data-flushed"} {
		for _, preexisting := range []bool{false, true} {
			idx := filepath.Join(t.TempDir(), "idx")
			if preexisting {
				build(t, idx, paths[0]).Close()
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledIngest$")
			cmd.Env = append(os.Environ(), "PCAPFLOW_KILL_AT="+point, "PCAPFLOW_KILL_INDEX="+idx,
				"PCAPFLOW_KILL_CAPTURES="+strings.Join(paths, ","))
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
				t.Fatalf("%s: child did not stop at the kill point: %v\n%s", point, err, out)
			}
			st, err := index.Open(idx)
			switch {
			case preexisting && err != nil:
				t.Fatalf("%s: the index before the killed run: %v", point, err)
			case preexisting:
				if got := jsonOf(t, st); !bytes.Equal(got, want(paths[0])) {
					t.Fatalf("%s: after the killed run the index answers differently", point)
				}
				st.Close()
			case !errors.Is(err, index.ErrIncomplete) && !errors.Is(err, index.ErrNotIndex) && !errors.Is(err, os.ErrNotExist):
				t.Fatalf("%s: open of a new index whose run was killed: %v", point, err)
			}
			st = build(t, idx, paths...)
			if got := jsonOf(t, st); !bytes.Equal(got, want(paths...)) {
				t.Fatalf("%s (preexisting %v): index completed after the kill differs from a scan", point, preexisting)
			}
		}
	}
}

// Every lookup field answers the same from the store as from a scan: the
// store's IDs hold every matching flow (all of them, and only them, when
// it says the answer is exact).
func TestEveryFieldStoreAndScan(t *testing.T) {
	paths := testCaptures(t)
	if len(paths) > 12 {
		paths = paths[:12]
	}
	mem := scanOf(t, paths...)
	st := build(t, filepath.Join(t.TempDir(), "idx"), paths...)
	var flows []flow.Flow
	mem.Flows(context.Background(), nil, func(f *flow.Flow) error { flows = append(flows, *f); return nil })
	ctx := context.Background()
	for _, field := range index.Fields {
		tried := 0
		for i := 0; i < len(flows) && tried < 8; i += 1 + len(flows)/8 {
			f := &flows[i]
			l := index.Lookup{Field: field}
			switch field {
			case index.FieldSrcAddr, index.FieldDstAddr:
				a := f.Key.SrcAddr()
				if field == index.FieldDstAddr {
					a = f.Key.DstAddr()
				}
				l.AddrLo, l.AddrHi = a, a
			case index.FieldSrcMAC:
				l.MAC = f.SrcMAC
			case index.FieldDstMAC:
				l.MAC = f.DstMAC
			case index.FieldCommunity:
				l.Community = f.CommunityID()
			case index.FieldFirst:
				l.Lo, l.Hi = uint64(f.First-1e9), uint64(f.First)
			case index.FieldLast:
				l.Lo, l.Hi = uint64(f.Last), uint64(f.Last+5e9)
			case index.FieldSrcPort:
				l.Lo, l.Hi = uint64(f.Key.SrcPort), uint64(f.Key.SrcPort)
			case index.FieldDstPort:
				l.Lo, l.Hi = uint64(f.Key.DstPort), uint64(f.Key.DstPort)+10
			case index.FieldProto:
				l.Lo, l.Hi = uint64(f.Key.Proto), uint64(f.Key.Proto)
			case index.FieldVLAN:
				l.Lo, l.Hi = 0, 4095
			case index.FieldPackets:
				l.Lo, l.Hi = f.Packets, f.Packets*2
			case index.FieldBytes:
				l.Lo, l.Hi = f.Bytes/2, f.Bytes
			case index.FieldTunnel:
				l.Lo, l.Hi = 1, 255
			case index.FieldTunnelID:
				l.Lo, l.Hi = 0, 1<<32-1
			}
			tried++
			// Either direction, too (only addresses, ports and MACs have
			// one; for the other fields it is ignored).
			for _, either := range []bool{false, true} {
				l.Either = either
				want, _, err := mem.Lookup(ctx, l)
				if err != nil {
					t.Fatal(err)
				}
				got, exact, err := st.Lookup(ctx, l)
				if err != nil {
					t.Fatalf("%v: %v", field, err)
				}
				var matched []uint64
				for _, id := range got {
					if l.Matches(&flows[id-1]) {
						matched = append(matched, id)
					}
				}
				if exact && !slices.Equal(got, want) || !slices.Equal(matched, want) {
					t.Errorf("%v %+v: store %d IDs (exact %v, %d matching), scan %d", field, l, len(got), exact, len(matched), len(want))
				}
				if n, err := st.Estimate(ctx, l); err != nil || n < uint64(len(want)) {
					t.Errorf("%v: estimate %d below the %d matching flows (%v)", field, n, len(want), err)
				}
			}
		}
		if tried == 0 {
			t.Errorf("%v: not tried", field)
		}
	}
}

// The final-value lists (first and last time by minute, packets and
// bytes by bit length) are written every so many IDs and the minutes'
// lists dropped then (so that their memory does not follow the archive's
// span): written every 16 flows, each flow is still found by its first
// and last time, packets and bytes, as in a store that wrote them once.
func TestFinalListsAcrossFlushes(t *testing.T) {
	small, whole, flows := flushedStores(t, func(o *index.Options) { index.SetEndFlush(o, 64) })
	if len(flows) < 1000 {
		t.Fatalf("%d flows: too few to cross many flushes", len(flows))
	}
	checked := 0
	for i := 0; i < len(flows); i += 1 + len(flows)/300 {
		f := &flows[i]
		for _, l := range []index.Lookup{
			{Field: index.FieldFirst, Lo: uint64(f.First), Hi: uint64(f.First)},
			{Field: index.FieldLast, Lo: uint64(f.Last), Hi: uint64(f.Last)},
			{Field: index.FieldPackets, Lo: f.Packets, Hi: f.Packets},
			{Field: index.FieldBytes, Lo: f.Bytes, Hi: f.Bytes},
		} {
			sameLookup(t, small, whole, l, f.ID)
			checked++
		}
	}
	t.Logf("%d lookups of %d flows", checked, len(flows))
}

// The lists of VLANs, MACs and tunnel IDs are written and dropped once
// they hold so many IDs (so that a LAN of many MACs does not hold every
// ID to the run's end): written every 64 IDs, each flow is still found
// by its MACs, VLANs and tunnel ID, as in a store that wrote them once.
func TestMappedListsAcrossFlushes(t *testing.T) {
	small, whole, flows := flushedStores(t, func(o *index.Options) { index.SetMappedFlush(o, 64) })
	kinds := map[index.Field]int{}
	for i := range flows {
		f := &flows[i]
		var ls []index.Lookup
		if f.HasSrcMAC {
			ls = append(ls, index.Lookup{Field: index.FieldSrcMAC, MAC: f.SrcMAC})
		}
		if f.HasDstMAC {
			ls = append(ls, index.Lookup{Field: index.FieldDstMAC, MAC: f.DstMAC})
		}
		for _, v := range f.Key.VLANs() {
			ls = append(ls, index.Lookup{Field: index.FieldVLAN, Lo: uint64(v), Hi: uint64(v)})
		}
		if f.Key.TunnelType != 0 {
			ls = append(ls, index.Lookup{Field: index.FieldTunnelID, Lo: uint64(f.Key.TunnelID), Hi: uint64(f.Key.TunnelID)})
		}
		for _, l := range ls {
			sameLookup(t, small, whole, l, f.ID)
			kinds[l.Field]++
		}
	}
	t.Logf("lookups by field: %v", kinds)
	for f, least := range map[index.Field]int{index.FieldSrcMAC: 300, index.FieldDstMAC: 300, index.FieldVLAN: 1, index.FieldTunnelID: 1} {
		if kinds[f] < least {
			t.Errorf("only %d lookups by %v: the captures test too little", kinds[f], f)
		}
	}
}

// flushedStores indexes flushCaptures twice: small with set's options
// (lists written early), whole with the defaults; flows are whole's.
func flushedStores(t *testing.T, set func(*index.Options)) (small, whole *index.Store, flows []flow.Flow) {
	t.Helper()
	paths := flushCaptures(t)
	dir := t.TempDir()
	var o index.Options
	set(&o)
	if _, err := index.Build(context.Background(), filepath.Join(dir, "small"), paths, o); err != nil {
		t.Fatal(err)
	}
	small, err := index.Open(filepath.Join(dir, "small"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	whole = build(t, filepath.Join(dir, "whole"), paths...)
	whole.Flows(context.Background(), nil, func(f *flow.Flow) error { flows = append(flows, *f); return nil })
	return small, whole, flows
}

// sameLookup checks that small finds flow id by l, and exactly what
// whole finds.
func sameLookup(t *testing.T, small, whole *index.Store, l index.Lookup, id uint64) {
	t.Helper()
	ctx := context.Background()
	got, _, err := small.Lookup(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, id) {
		t.Fatalf("flow %d not found by %v in the store that wrote its lists early", id, l.Field)
	}
	want, _, err := whole.Lookup(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%v of flow %d: %d IDs, %d in the store that wrote them once", l.Field, id, len(got), len(want))
	}
}

// flushCaptures is testCaptures and a mix of a few thousand flows, so
// that lists written every few dozen IDs are written many times with or
// without the corpus.
func flushCaptures(t *testing.T) []string {
	paths := testCaptures(t)
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 11, Bytes: 2 << 20, Active: 200, MeanPackets: 4}).WritePcap(&b, capgen.PcapOptions{})
	p := filepath.Join(t.TempDir(), "mix.pcap")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return append(paths, p)
}
