package flow_test

import (
	"fmt"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// decoded is a capture decoded once, so that the benchmark measures the
// flow table alone.
type decoded struct {
	recs []pcapio.Record
	pkts []pcapio.Packet
}

func decodeMix(o capgen.MixOptions) decoded {
	c := capgen.Mix(o)
	d := decoded{recs: make([]pcapio.Record, len(c.Packets)), pkts: make([]pcapio.Packet, len(c.Packets))}
	var off int64 = 24
	for i, p := range c.Packets {
		d.recs[i] = pcapio.Record{Offset: off, Length: 16 + len(p.Data), CapLen: len(p.Data), OrigLen: len(p.Data),
			Timestamp: p.TS, LinkType: pcapio.LinkEthernet, Data: p.Data}
		off += int64(d.recs[i].Length)
		d.pkts[i].Decode(pcapio.LinkEthernet, p.Data)
	}
	return d
}

// BenchmarkTableAdd accounts decoded packets: the per-packet work of the
// ingest pass after decoding. With many flows the table no longer fits in
// the CPU caches and each packet costs a cache miss or two; that is the
// bound on indexing speed (docs/BENCHMARKS.md).
func BenchmarkTableAdd(b *testing.B) {
	for _, tc := range []struct {
		active, mean int
	}{
		{active: 1000, mean: 40},   // few long connections
		{active: 200_000, mean: 2}, // many short ones
	} {
		d := decodeMix(capgen.MixOptions{Seed: 7, Bytes: 256 << 20, Active: tc.active, MeanPackets: tc.mean})
		t := flow.NewTable(flow.Options{})
		for i := range d.recs {
			t.Add(&d.recs[i], &d.pkts[i])
		}
		flows := int(t.NextID() - 1)
		hashes := make([]uint64, len(d.pkts))
		for i := range d.pkts {
			hashes[i] = flow.HashOf(&d.pkts[i])
		}
		// prefetch is 0 for none, else the group Prefetch is given: the
		// ingest's way (index/ingest.go).
		for _, prefetch := range []int{0, 16} {
			b.Run(fmt.Sprintf("flows=%d/prefetch=%d", flows, prefetch), func(b *testing.B) {
				b.ReportAllocs()
				n := 0
				for i := 0; i < b.N; i++ {
					t := flow.NewTable(flow.Options{})
					for j := range d.recs {
						if prefetch > 0 && j%prefetch == 0 {
							t.Prefetch(hashes[j:min(j+prefetch, len(hashes))])
						}
						t.Add(&d.recs[j], &d.pkts[j])
					}
					t.Finish()
					n += len(d.recs)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/pkt")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*flows), "ns/flow")
			})
		}
	}
}
