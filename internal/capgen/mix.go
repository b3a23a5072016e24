package capgen

import (
	"cmp"
	"math/rand/v2"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// MixOptions shapes the traffic of Mix.
type MixOptions struct {
	Seed   uint64
	Bytes  int // stop once the frames add up to about this many bytes
	Active int // connections open at once; their packets interleave
	// MeanPackets is the mean number of data segments per connection
	// (geometric), so most connections are short and a few are long, as
	// in real traffic.
	MeanPackets int
	// ElephantPercent of the data segments go to one long connection
	// that never closes, so a benchmark can extract a large flow.
	ElephantPercent int
}

// Mix generates interleaved TCP connections (handshake, request,
// response segments with ACKs, close) and some UDP request/response
// pairs between many hosts, a seventh of them over IPv6. It is the
// workload of the package benchmarks: many flows, a realistic frame-size
// mix, packets of different flows interleaved as on a busy link.
func Mix(o MixOptions) *Capture {
	o.Active = cmp.Or(o.Active, 1000)
	o.MeanPackets = cmp.Or(o.MeanPackets, 8)
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	c := New(Start)
	c.Step = 10_007
	payload := Text("mix", 1448)
	type live struct {
		t    *TCPConn
		left int
	}
	var serial uint32
	endpoint := func(server bool) (Endpoint, Endpoint) {
		serial++
		n := serial
		if n%7 == 0 {
			cli := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(n >> 8), 15: byte(n)})
			srv := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 15: byte(n % 50)})
			return Endpoint{MAC: MAC(1), IP: cli, Port: uint16(1024 + n%60000)}, Endpoint{MAC: MAC(2), IP: srv, Port: 443}
		}
		cli := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		srv := netip.AddrFrom4([4]byte{192, 0, 2, byte(n % 50)})
		port := uint16(80)
		if !server {
			port = 53
		}
		return Endpoint{MAC: MAC(1), IP: cli, Port: uint16(1024 + n%60000)}, Endpoint{MAC: MAC(2), IP: srv, Port: port}
	}
	open := func() live {
		a, b := endpoint(true)
		t := c.NewTCP(a, b, rng.Uint32(), rng.Uint32())
		t.Handshake()
		t.Data(true, payload[:200+rng.IntN(300)])
		return live{t: t, left: 1 + int(rng.ExpFloat64()*float64(o.MeanPackets))}
	}
	conns := make([]live, o.Active)
	for i := range conns {
		conns[i] = open()
	}
	var total int
	for total < o.Bytes {
		i := rng.IntN(len(conns))
		l := &conns[i]
		elephant := rng.IntN(100) < o.ElephantPercent
		if elephant {
			l = &conns[0]
		}
		before := len(c.Packets)
		switch {
		case rng.IntN(20) == 0: // a DNS-like exchange on the side
			a, b := endpoint(false)
			q := Frame{SrcMAC: a.MAC, DstMAC: b.MAC, Src: a.IP, Dst: b.IP, Proto: layers.IPProtocolUDP, SrcPort: a.Port, DstPort: b.Port, Payload: payload[:40]}
			c.Add(q.Bytes())
			q.Src, q.Dst, q.SrcPort, q.DstPort, q.Payload = b.IP, a.IP, b.Port, a.Port, payload[:120]
			c.Add(q.Bytes())
		case elephant:
			l.t.Data(false, payload)
			l.t.Ack(true)
		case l.left <= 0 && (i != 0 || o.ElephantPercent == 0):
			l.t.Close()
			*l = open()
		default:
			l.t.Data(false, payload[:1448-rng.IntN(2)*rng.IntN(1400)])
			if l.left%2 == 0 {
				l.t.Ack(true)
			}
			l.left--
		}
		for _, p := range c.Packets[before:] {
			total += len(p.Data) + 16
		}
	}
	return c
}
