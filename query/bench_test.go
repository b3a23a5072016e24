package query

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// BenchmarkSelect runs filters against a Pebble index of about 60k flows:
// the cost of a query is the planner's lookups plus reading the records
// of the flows it returns, not a pass over all flows.
func BenchmarkSelect(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "mix.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	c := capgen.Mix(capgen.MixOptions{Seed: 3, Bytes: 96 << 20, Active: 5000, MeanPackets: 4})
	if err := c.WritePcap(f, capgen.PcapOptions{}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	c = nil
	if _, err := index.Build(context.Background(), filepath.Join(dir, "idx"), []string{path}, index.Options{}); err != nil {
		b.Fatal(err)
	}
	st, err := index.Open(filepath.Join(dir, "idx"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.Logf("%d flows", st.NumFlows())
	for _, filter := range []string{
		"flow 12345",
		"host 10.0.1.2",
		"host 10.0.1.2 and port 80",
		"net 10.0.0.0/24",
		"udp and dst port 53",
		"net 192.0.2.0/28 and not port 53 and packets > 20",
		"bytes > 20000",
	} {
		e := MustParse(filter)
		b.Run(filter, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for i := 0; i < b.N; i++ {
				n = 0
				err := Select(context.Background(), st, e, func(*flow.Flow) error { n++; return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "flows")
		})
	}
}
