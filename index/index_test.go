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
	"strings"
	"testing"
	"time"

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
	w, _ := flow.NewWriter(&b, flow.FormatJSON, names)
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
	if _, err := index.Extract(context.Background(), r, ids, pcapio.NewCopier(&b, pcapio.OutputFormat(layouts), layouts)); err != nil {
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

// The index answers exactly as a scan: the same flow records, the same
// packet offsets, the same extracted bytes, for every capture.
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
			var pa, pb []index.PacketRef
			for id := uint64(1); id <= st.NumFlows(); id++ {
				var err error
				if pa, err = st.Packets(id, pa[:0]); err != nil {
					t.Fatal(err)
				}
				if pb, err = mem.Packets(id, pb[:0]); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(pa) != fmt.Sprint(pb) {
					t.Fatalf("flow %d: index packets %v, scan %v", id, pa, pb)
				}
				if a, b := extractAll(t, st, []uint64{id}), extractAll(t, mem, []uint64{id}); !bytes.Equal(a, b) {
					t.Fatalf("flow %d: extraction differs", id)
				}
			}
		})
	}
}

// Extracting every flow gives back every packet of the capture that
// belongs to a flow, byte for byte and in order.
func TestExtractAllFlowsRoundTrip(t *testing.T) {
	for _, path := range testCaptures(t) {
		if strings.HasSuffix(path, ".pcapng") {
			continue // pcapng output repeats section headers; compared record by record below
		}
		mem, _ := index.Scan(context.Background(), []string{path}, index.ScanOptions{KeepPackets: true})
		var ids []uint64
		var packets uint64
		mem.Flows(context.Background(), nil, func(f *flow.Flow) error {
			ids = append(ids, f.ID)
			packets += f.Packets
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
		if n != packets {
			t.Errorf("%s: extracted %d packets, flows hold %d", filepath.Base(path), n, packets)
		}
	}
}

func TestMultiCaptureIndex(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, f := range capgen.Files()[:3] {
		p := filepath.Join(dir, f.Name)
		os.WriteFile(p, f.Make(), 0o644)
		paths = append(paths, p)
	}
	idx := filepath.Join(dir, "archive.pfidx")
	build(t, idx, paths[0]).Close()
	// Adding the rest later numbers their flows after the first capture's.
	res, err := index.Build(context.Background(), idx, paths, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 2 || len(res.Skipped) != 1 {
		t.Fatalf("added %d, skipped %d; want 2 and 1", len(res.Added), len(res.Skipped))
	}
	st, err := index.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mem, _ := index.Scan(context.Background(), paths, index.ScanOptions{KeepPackets: true})
	if a, b := jsonOf(t, st), jsonOf(t, mem); !bytes.Equal(a, b) {
		t.Fatalf("archive index differs from a scan of the same captures")
	}
	// Extraction across captures merges by timestamp: all three captures
	// hold the same packets at the same times, so each record comes three
	// times in a row, one per capture, in capture order.
	ids := []uint64{1, 1 + st.Captures()[1].FirstID - 1, st.Captures()[2].FirstID}
	out := extractAll(t, st, ids)
	r, err := pcapio.NewReader(bytes.NewReader(out), "out")
	if err != nil {
		t.Fatal(err)
	}
	var rec pcapio.Record
	var last int64
	n := 0
	for r.Next(&rec) == nil {
		if rec.Timestamp < last {
			t.Fatalf("record %d goes back in time", n)
		}
		last = rec.Timestamp
		n++
	}
	if n != 3*7 {
		t.Errorf("extracted %d records, want 21", n)
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
		return st.Check()
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
		"appended":  append(append([]byte(nil), data...), 0),
		"truncated": data[:len(data)-1],
		"rewritten": func() []byte { b := append([]byte(nil), data...); b[len(b)-5] ^= 0xff; return b }(),
	}
	for name, b := range cases {
		os.WriteFile(p, b, 0o644)
		var se *index.StaleError
		if err := check(); !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a StaleError", name, err)
		} else if !strings.Contains(err.Error(), "rebuild") {
			t.Errorf("%s: message %q does not say how to rebuild", name, err)
		}
	}
	os.Remove(p)
	if err := check(); err == nil {
		t.Error("missing capture: no error")
	}
}

// A killed ingest leaves an index that is refused until index is run
// again, which completes it.
func TestKilledIngest(t *testing.T) {
	if os.Getenv("PCAPFLOW_KILL_AT") != "" {
		index.KillPoint = func(p string) {
			if p == os.Getenv("PCAPFLOW_KILL_AT") {
				os.Exit(3) // no deferred cleanup, no final flush: as if killed
			}
		}
		_, err := index.Build(context.Background(), os.Getenv("PCAPFLOW_KILL_INDEX"), strings.Split(os.Getenv("PCAPFLOW_KILL_CAPTURES"), ","), index.Options{})
		fmt.Println("build returned", err)
		os.Exit(0)
	}
	dir := t.TempDir()
	var paths []string
	for _, f := range capgen.Files()[:2] {
		p := filepath.Join(dir, f.Name)
		os.WriteFile(p, f.Make(), 0o644)
		paths = append(paths, p)
	}
	want := func() []byte {
		mem, _ := index.Scan(context.Background(), paths, index.ScanOptions{})
		return jsonOf(t, mem)
	}()
	for _, point := range []string{"dir-made", "lock-taken", "store-created", "capture-written", "data-written", "data-flushed"} {
		for _, preexisting := range []bool{false, true} {
			early := point == "dir-made" || point == "lock-taken" || point == "store-created"
			if early && preexisting {
				continue // nothing changed yet: the old index stands (TestKillIndexAtRandomPoints covers it)
			}
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
			if _, err := index.Open(idx); !errors.Is(err, index.ErrIncomplete) {
				t.Fatalf("%s (preexisting %v): open gave %v, want ErrIncomplete", point, preexisting, err)
			}
			st := build(t, idx, paths...)
			if got := jsonOf(t, st); !bytes.Equal(got, want) {
				t.Fatalf("%s (preexisting %v): index completed after the kill differs from a scan", point, preexisting)
			}
		}
	}
}

// PacketsOf agrees with Packets for every flow.
func TestPacketsOf(t *testing.T) {
	paths := testCaptures(t)
	// A flow long enough to have full posting chunks (512 packets each).
	c := capgen.New(capgen.Start)
	conn := c.NewTCP(capgen.Endpoint{IP: netip.MustParseAddr("10.9.0.1"), Port: 1234}, capgen.Endpoint{IP: netip.MustParseAddr("10.9.0.2"), Port: 80}, 1, 1)
	conn.Handshake()
	for i := 0; i < 1500; i++ {
		conn.Data(i%3 == 0, []byte(fmt.Sprint("segment ", i)))
	}
	var b bytes.Buffer
	c.WritePcap(&b, capgen.PcapOptions{})
	long := filepath.Join(t.TempDir(), "long.pcap")
	os.WriteFile(long, b.Bytes(), 0o644)
	paths = append([]string{long}, paths...)
	st := build(t, filepath.Join(t.TempDir(), "all"), paths...)
	var ids []uint64
	for id := uint64(1); id <= st.NumFlows(); id += 1 + id%3 {
		ids = append(ids, id)
	}
	n := 0
	err := st.PacketsOf(context.Background(), ids, func(id uint64, refs []index.PacketRef) error {
		want, err := st.Packets(id, nil)
		if err != nil {
			return err
		}
		if fmt.Sprint(refs) != fmt.Sprint(want) {
			t.Errorf("flow %d: %v, Packets says %v", id, refs, want)
		}
		if ids[n] != id {
			t.Errorf("flow %d out of order", id)
		}
		n++
		return nil
	})
	if err != nil || n != len(ids) {
		t.Fatalf("%d of %d flows, err %v", n, len(ids), err)
	}
}
