package pcapio_test

import (
	"bytes"
	"io"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// benchCapture builds about size bytes of TCP traffic with a realistic
// frame mix: full-size data segments and bare ACKs, some IPv6 and VLAN.
func benchCapture(b *testing.B, size int, ng bool) []byte {
	b.Helper()
	c := capgen.New(capgen.Start)
	payload := capgen.Text("bench", 1448)
	var total int
	for i := 0; total < size; i++ {
		f := capgen.Frame{Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("192.0.2.1"),
			Proto: layers.IPProtocolTCP, SrcPort: uint16(1024 + i%60000), DstPort: 443, Flags: pcapio.TCPAck, Seq: uint32(i)}
		if i%7 == 0 {
			f.Src, f.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		}
		if i%10 == 0 {
			f.VLANs = []uint16{42}
		}
		if i%5 < 3 {
			f.Payload = payload
		}
		d := f.Bytes()
		c.Add(d)
		total += len(d) + 16
	}
	var buf bytes.Buffer
	if ng {
		c.WritePcapng(&buf, capgen.NgOptions{Interfaces: []capgen.NgInterface{{Link: 1}}})
	} else {
		c.WritePcap(&buf, capgen.PcapOptions{})
	}
	return buf.Bytes()
}

func benchRead(b *testing.B, ng, decode bool) {
	data := benchCapture(b, 64<<20, ng)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var pkts int64
	for i := 0; i < b.N; i++ {
		r, err := pcapio.NewReader(bytes.NewReader(data), "bench")
		if err != nil {
			b.Fatal(err)
		}
		var rec pcapio.Record
		var p pcapio.Packet
		var sum uint64
		for {
			if err := r.Next(&rec); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
			pkts++
			if decode {
				p.Decode(rec.LinkType, rec.Data)
				sum += uint64(p.SrcPort) + uint64(p.PayloadLen)
			}
		}
		_ = sum
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds()/1e6, "Mpkt/s")
	b.ReportMetric(float64(len(data))/float64(pkts/int64(b.N)), "B/pkt")
}

func BenchmarkReadPcap(b *testing.B)         { benchRead(b, false, false) }
func BenchmarkReadDecodePcap(b *testing.B)   { benchRead(b, false, true) }
func BenchmarkReadPcapng(b *testing.B)       { benchRead(b, true, false) }
func BenchmarkReadDecodePcapng(b *testing.B) { benchRead(b, true, true) }

func BenchmarkDecode(b *testing.B) {
	c := capgen.Basic()
	var p pcapio.Packet
	b.ReportAllocs()
	n := 0
	for i := 0; i < b.N; i++ {
		pk := c.Packets[i%len(c.Packets)]
		p.Decode(pcapio.LinkEthernet, pk.Data)
		n += p.PayloadLen
	}
}

// BenchmarkDecap measures what tunnel support costs: on plain traffic the
// check for a tunnel must be nearly free (compare "plain" with
// "plain/no-tunnels"); on tunnelled traffic each inner packet costs one
// more decode.
func BenchmarkDecap(b *testing.B) {
	plain, tunnels := capgen.Basic(), capgen.Tunnels()
	for _, tc := range []struct {
		name  string
		c     *capgen.Capture
		opts  pcapio.DecodeOptions
		inner bool
	}{
		{"plain", plain, pcapio.DecodeOptions{}, false},
		{"plain/no-tunnels", plain, pcapio.DecodeOptions{NoTunnels: true}, false},
		{"tunnelled/outer-only", tunnels, pcapio.DecodeOptions{NoTunnels: true}, false},
		{"tunnelled/outer+inner", tunnels, pcapio.DecodeOptions{}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p, in pcapio.Packet
			b.ReportAllocs()
			n := 0
			for i := 0; i < b.N; i++ {
				pk := tc.c.Packets[i%len(tc.c.Packets)]
				p.DecodeWith(pcapio.LinkEthernet, pk.Data, &tc.opts)
				n += p.PayloadLen
				if tc.inner && p.Tunnel != pcapio.TunnelNone {
					in.DecodeInner(&p, pk.Data, &tc.opts)
					n += in.PayloadLen
				}
			}
			_ = n
		})
	}
}
