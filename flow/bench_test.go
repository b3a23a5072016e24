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

// BenchmarkTableExpire is BenchmarkTableAdd's many short connections
// (50 k open at once) with the ingest's timeouts, over a capture
// stretched to 100 µs a packet: its 256 MB last 87 s, and closed
// connections end 10 s after their close, so the table ends flows as it
// goes (94 k of 237 k), as an index run's does (910 k of the 2 GB real
// capture's 1.2 M). Ending them (the deadline queue, finishing and
// freeing each flow) was a third of the table's time on the real capture.
func BenchmarkTableExpire(b *testing.B) {
	d := decodeMix(capgen.MixOptions{Seed: 7, Bytes: 256 << 20, Active: 50_000, MeanPackets: 2})
	first := d.recs[0].Timestamp
	for i := range d.recs {
		d.recs[i].Timestamp = first + (d.recs[i].Timestamp-first)*10
	}
	hashes := make([]uint64, len(d.pkts))
	keys := make([]flow.Key, len(d.pkts))
	for i := range d.pkts {
		keys[i] = flow.KeyOf(&d.pkts[i])
		hashes[i] = keys[i].Hash()
	}
	b.ReportAllocs()
	b.ResetTimer()
	n, ended, flows := 0, 0, 0
	for i := 0; i < b.N; i++ {
		t := flow.NewTable(flow.Options{IdleTimeout: flow.DefaultIdleTimeout, OnEnd: func(fs []flow.Ended) { ended += len(fs) }})
		for j := range d.recs {
			if j%16 == 0 {
				t.Prefetch(hashes[j:min(j+16, len(hashes))])
			}
			t.AddKeyed(&d.recs[j], &d.pkts[j], &keys[j], hashes[j])
		}
		n += len(d.recs)
		flows += int(t.NextID() - 1)
	}
	if ended == 0 {
		b.Fatal("no flow ended: the benchmark does not measure expiry")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/pkt")
	b.ReportMetric(float64(ended)/float64(b.N), "ended/op")
	b.ReportMetric(float64(flows)/float64(b.N), "flows/op")
	b.ReportMetric(float64(d.recs[len(d.recs)-1].Timestamp-first)/1e9, "capture-s")
}

// BenchmarkKeySet makes the keys of a decoded batch of 256 packets in
// place (Key.Set, what the decoder does), and as a Key built and copied
// out (KeyOf's first form).
func BenchmarkKeySet(b *testing.B) {
	ps := make([]pcapio.Packet, 256)
	for i := range ps {
		p := &ps[i]
		p.Src[0], p.Dst[0], p.IPVersion, p.Proto = byte(i), 10, 4, pcapio.ProtoTCP
		p.HasPorts, p.SrcPort, p.DstPort = true, uint16(40000+i), 80
	}
	keys := make([]flow.Key, len(ps))
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			for i := range ps {
				keys[i].Set(&ps[i])
			}
		}
	})
	b.Run("copied", func(b *testing.B) {
		for b.Loop() {
			for i := range ps {
				p := &ps[i]
				k := flow.Key{Src: p.Src, Dst: p.Dst, Proto: p.Proto, IPVersion: p.IPVersion}
				if p.HasPorts {
					k.SrcPort, k.DstPort = p.SrcPort, p.DstPort
				}
				n := min(p.NumVLAN, flow.MaxVLAN)
				k.NumVLAN = uint8(n)
				copy(k.VLAN[:n], p.VLAN[:n])
				keys[i] = k
			}
		}
	})
}
