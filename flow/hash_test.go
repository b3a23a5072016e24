package flow_test

import (
	"math/rand/v2"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// TestReverseHash checks the shortcut a new flow's lookup of its reverse
// takes (the hash with its direction bit flipped) against hashing the
// reversed key, and that both directions share a home slot.
func TestReverseHash(t *testing.T) {
	v4 := func(a, b, c, d byte) (x [16]byte) { x[0], x[1], x[2], x[3] = a, b, c, d; return }
	v6 := func(last byte) (x [16]byte) { x[0], x[1], x[15] = 0x20, 0x01, last; return }
	cases := []struct {
		name string
		k    flow.Key
	}{
		{"tcp", flow.Key{Src: v4(10, 0, 0, 1), Dst: v4(10, 0, 0, 2), SrcPort: 40000, DstPort: 443, Proto: pcapio.ProtoTCP, IPVersion: 4}},
		{"tcp, reversed", flow.Key{Src: v4(10, 0, 0, 2), Dst: v4(10, 0, 0, 1), SrcPort: 443, DstPort: 40000, Proto: pcapio.ProtoTCP, IPVersion: 4}},
		{"same address, ports differ", flow.Key{Src: v4(127, 0, 0, 1), Dst: v4(127, 0, 0, 1), SrcPort: 5000, DstPort: 80, Proto: pcapio.ProtoTCP, IPVersion: 4}},
		{"same endpoints", flow.Key{Src: v4(127, 0, 0, 1), Dst: v4(127, 0, 0, 1), SrcPort: 53, DstPort: 53, Proto: pcapio.ProtoUDP, IPVersion: 4}},
		{"ipv6, low halves differ", flow.Key{Src: v6(1), Dst: v6(2), SrcPort: 1, DstPort: 1, Proto: pcapio.ProtoUDP, IPVersion: 6}},
		{"icmp echo", flow.Key{Src: v4(10, 0, 0, 1), Dst: v4(10, 0, 0, 2), SrcPort: 8, Proto: pcapio.ProtoICMP, IPVersion: 4}},
		{"icmpv6 echo", flow.Key{Src: v6(1), Dst: v6(2), SrcPort: 128, Proto: pcapio.ProtoICMPv6, IPVersion: 6}},
		{"icmp unreachable", flow.Key{Src: v4(10, 0, 0, 1), Dst: v4(10, 0, 0, 2), SrcPort: 3, DstPort: 1, Proto: pcapio.ProtoICMP, IPVersion: 4}},
		{"no ports (gre)", flow.Key{Src: v4(10, 0, 0, 1), Dst: v4(10, 0, 0, 2), Proto: 47, IPVersion: 4}},
		{"vlans and a tunnel", flow.Key{Src: v4(10, 0, 0, 1), Dst: v4(10, 0, 0, 2), SrcPort: 1, DstPort: 2, Proto: pcapio.ProtoTCP, IPVersion: 4,
			VLAN: [flow.MaxVLAN]uint16{10, 20}, NumVLAN: 2, TunnelType: 1, Tunnel: 7, TunnelID: 99}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		var k flow.Key
		for j := range 16 {
			k.Src[j], k.Dst[j] = byte(rng.IntN(3)), byte(rng.IntN(3))
		}
		k.SrcPort, k.DstPort = uint16(rng.IntN(3)), uint16(rng.IntN(3))
		k.Proto, k.IPVersion = []uint8{pcapio.ProtoTCP, pcapio.ProtoUDP, pcapio.ProtoICMP, pcapio.ProtoICMPv6}[rng.IntN(4)], 6
		cases = append(cases, struct {
			name string
			k    flow.Key
		}{"random", k})
	}
	for _, tc := range cases {
		got, want := flow.ReverseHash(&tc.k)
		if got != want {
			t.Errorf("%s %+v: reverse hash %#x, want %#x", tc.name, tc.k, got, want)
		}
		r := tc.k.Reverse()
		if tc.k.Proto != pcapio.ProtoICMP && tc.k.Proto != pcapio.ProtoICMPv6 && uint32(tc.k.Hash()>>32)&(1<<31-1) != uint32(r.Hash()>>32)&(1<<31-1) {
			t.Errorf("%s %+v: the directions' tags differ in more than the top bit: %#x, %#x", tc.name, tc.k, tc.k.Hash(), r.Hash())
		}
	}
}
