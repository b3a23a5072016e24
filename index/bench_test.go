package index_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// benchFiles caches one generated capture per size across benchmarks.
var benchFiles sync.Map

// benchCapture writes a capgen.Mix capture of about size bytes and
// returns its path and size.
func benchCapture(b *testing.B, size int) (string, int64) {
	b.Helper()
	if p, ok := benchFiles.Load(size); ok {
		fi, err := os.Stat(p.(string))
		if err == nil {
			return p.(string), fi.Size()
		}
	}
	dir, err := os.MkdirTemp("", "pcapflow-bench")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "mix.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	c := capgen.Mix(capgen.MixOptions{Seed: 1, Bytes: size, Active: 2000, ElephantPercent: 5})
	if err := c.WritePcap(f, capgen.PcapOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	benchFiles.Store(size, path)
	fi, _ := os.Stat(path)
	return path, fi.Size()
}

func TestMain(m *testing.M) {
	code := m.Run()
	benchFiles.Range(func(_, p any) bool { os.RemoveAll(filepath.Dir(p.(string))); return true })
	os.Exit(code)
}

// BenchmarkBuild is the whole ingest pass into Pebble: read, decode, flow
// table, postings, bulk load, flush.
func BenchmarkBuild(b *testing.B) {
	path, size := benchCapture(b, 64<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	var flows uint64
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		res, err := index.Build(context.Background(), filepath.Join(dir, "idx"), []string{path}, index.Options{})
		if err != nil {
			b.Fatal(err)
		}
		flows = res.Added[0].Flows
	}
	b.ReportMetric(float64(flows), "flows")
}

// BenchmarkScan is the in-memory pass that flows and count use without an
// index.
func BenchmarkScan(b *testing.B) {
	path, size := benchCapture(b, 64<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, err := index.Scan(context.Background(), []string{path}, index.ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}

func openBench(b *testing.B) *index.Store {
	b.Helper()
	path, _ := benchCapture(b, 64<<20)
	dir := filepath.Join(filepath.Dir(path), "idx")
	if _, err := os.Stat(dir); err != nil {
		if _, err := index.Build(context.Background(), dir, []string{path}, index.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	s, err := index.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkOpen is the fixed cost every command on an index pays.
func BenchmarkOpen(b *testing.B) {
	s := openBench(b)
	dir := s.Dir()
	s.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s, err := index.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkFlowRecord reads one flow record by ID.
func BenchmarkFlowRecord(b *testing.B) {
	s := openBench(b)
	n := s.NumFlows()
	b.ReportAllocs()
	ids := []uint64{0}
	for i := 0; i < b.N; i++ {
		ids[0] = 1 + uint64(i*7919)%n
		if err := s.Flows(context.Background(), ids, func(*flow.Flow) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupPort is an attribute lookup that returns many IDs.
func BenchmarkLookupPort(b *testing.B) {
	s := openBench(b)
	b.ReportAllocs()
	var n int
	for i := 0; i < b.N; i++ {
		ids, _, err := s.Lookup(context.Background(), index.Lookup{Field: index.FieldDstPort, Lo: 53, Hi: 53})
		if err != nil {
			b.Fatal(err)
		}
		n = len(ids)
	}
	b.ReportMetric(float64(n), "ids")
}

// BenchmarkExtractFlow extracts the largest flow: seek to each record of
// it and copy it out; the cost should follow the flow, not the file.
func BenchmarkExtractFlow(b *testing.B) {
	s := openBench(b)
	var big uint64
	var most uint64
	s.Flows(context.Background(), nil, func(f *flow.Flow) error {
		if f.Packets > most {
			big, most = f.ID, f.Packets
		}
		return nil
	})
	layouts := index.Layouts(s)
	b.ReportAllocs()
	var bytes int64
	for i := 0; i < b.N; i++ {
		cw := &countWriter{}
		if _, err := index.Extract(context.Background(), s, []uint64{big}, pcapio.NewCopier(cw, pcapio.FormatPcap, layouts), index.Window{}); err != nil {
			b.Fatal(err)
		}
		bytes = cw.n
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(most), "packets")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// BenchmarkFlowsStoredLate reads the records and postings of every flow
// that outlived its block (L and N groups) of an archive of a capture
// and its copy an hour later, in ID order: as a listing or an extract
// of UDP flows does.
func BenchmarkFlowsStoredLate(b *testing.B) {
	paths := shiftedCopies(b, outliving(1), 2, time.Hour)
	idx := filepath.Join(b.TempDir(), "idx")
	if _, err := index.Build(context.Background(), idx, paths, index.Options{}); err != nil {
		b.Fatal(err)
	}
	s, err := index.Open(idx)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var ids []uint64
	s.Flows(context.Background(), nil, func(f *flow.Flow) error {
		if f.Key.Proto == pcapio.ProtoUDP {
			ids = append(ids, f.ID)
		}
		return nil
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Flows(context.Background(), ids, func(*flow.Flow) error { return nil }); err != nil {
			b.Fatal(err)
		}
		if err := s.PacketsOf(context.Background(), ids, func(uint64, []index.PacketRef) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ids)), "flows")
}
