package pcapio_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

func addr(p *pcapio.Packet, a [16]byte) netip.Addr {
	if p.IPVersion == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(a)
}

// crossCheck decodes a frame with gopacket too and compares what both
// found: addresses, protocol, ports, VLANs and TCP/UDP payload length.
func crossCheck(t *testing.T, where string, link pcapio.LinkType, data []byte) {
	var p pcapio.Packet
	p.Decode(link, data)
	gp := gopacket.NewPacket(data, layers.LinkType(link), gopacket.DecodeOptions{Lazy: false, NoCopy: true})
	var gsrc, gdst netip.Addr
	var gproto layers.IPProtocol
	var glen, ihl int
	var frag bool
	switch nl := gp.NetworkLayer().(type) {
	case *layers.IPv4:
		gsrc, _ = netip.AddrFromSlice(nl.SrcIP)
		gdst, _ = netip.AddrFromSlice(nl.DstIP)
		gproto, glen, ihl = nl.Protocol, int(nl.Length), int(nl.IHL)*4
		frag = nl.Flags&layers.IPv4MoreFragments != 0 || nl.FragOffset != 0
	case *layers.IPv6:
		gsrc, _ = netip.AddrFromSlice(nl.SrcIP)
		gdst, _ = netip.AddrFromSlice(nl.DstIP)
		gproto = nl.NextHeader
		for _, l := range gp.Layers() {
			switch e := l.(type) {
			case *layers.IPv6HopByHop:
				gproto = e.NextHeader
			case *layers.IPv6Routing:
				gproto = e.NextHeader
				// With segments left, the final destination is the last
				// listed address (type 0); our decoder keys flows by it.
				if e.SegmentsLeft > 0 && e.RoutingType == 0 && len(e.SourceRoutingIPs) > 0 {
					gdst, _ = netip.AddrFromSlice(e.SourceRoutingIPs[len(e.SourceRoutingIPs)-1])
				}
			case *layers.IPv6Destination:
				gproto = e.NextHeader
			case *layers.IPv6Fragment:
				gproto = e.NextHeader
				frag = e.FragmentOffset != 0 || e.MoreFragments
			}
		}
	default:
		if p.IPVersion != 0 && gp.ErrorLayer() == nil {
			t.Errorf("%s: we decoded IPv%d, gopacket found no IP (%v)", where, p.IPVersion, gp)
		}
		return
	}
	if p.IPVersion == 0 {
		t.Errorf("%s: gopacket found IP, we did not (problem %v)", where, p.Problem)
		return
	}
	if addr(&p, p.Src) != gsrc || addr(&p, p.Dst) != gdst || p.Proto != uint8(gproto) {
		t.Errorf("%s: %v>%v/%d, gopacket %v>%v/%d", where, addr(&p, p.Src), addr(&p, p.Dst), p.Proto, gsrc, gdst, gproto)
	}
	if frag != p.Fragment {
		t.Errorf("%s: fragment %v, gopacket %v", where, p.Fragment, frag)
	}
	_ = glen
	_ = ihl
	var vl []uint16
	for _, l := range gp.Layers() {
		if d, ok := l.(*layers.Dot1Q); ok {
			vl = append(vl, d.VLANIdentifier)
		}
	}
	if len(vl) != p.NumVLAN {
		t.Errorf("%s: %d VLAN tags, gopacket %d", where, p.NumVLAN, len(vl))
	}
	for i := range min(len(vl), p.NumVLAN, pcapio.MaxVLAN) {
		if vl[i] != p.VLAN[i] {
			t.Errorf("%s: VLAN %d is %d, gopacket %d", where, i, p.VLAN[i], vl[i])
		}
	}
	if p.Truncated || frag {
		return
	}
	if p.Proto != pcapio.ProtoTCP && p.Proto != pcapio.ProtoUDP {
		return
	}
	switch tl := gp.TransportLayer().(type) {
	case *layers.TCP:
		if !p.HasTCPHeader || p.SrcPort != uint16(tl.SrcPort) || p.DstPort != uint16(tl.DstPort) || p.Seq != tl.Seq || p.Ack != tl.Ack {
			t.Errorf("%s: TCP %d>%d seq %d, gopacket %d>%d seq %d", where, p.SrcPort, p.DstPort, p.Seq, tl.SrcPort, tl.DstPort, tl.Seq)
		}
		if p.PayloadLen != len(tl.Payload) || !bytes.Equal(p.PayloadData(data), tl.Payload) {
			t.Errorf("%s: TCP payload %d bytes, gopacket %d", where, p.PayloadLen, len(tl.Payload))
		}
	case *layers.UDP:
		if p.SrcPort != uint16(tl.SrcPort) || p.DstPort != uint16(tl.DstPort) {
			t.Errorf("%s: UDP %d>%d, gopacket %d>%d", where, p.SrcPort, p.DstPort, tl.SrcPort, tl.DstPort)
		}
		if int(tl.Length) >= 8 && p.PayloadLen != int(tl.Length)-8 {
			t.Errorf("%s: UDP payload %d, UDP length says %d", where, p.PayloadLen, tl.Length-8)
		}
	}
}

func TestDecodeCorpusAgainstGopacket(t *testing.T) {
	dir := corpus.Dir(t)
	n := 0
	for _, e := range corpus.Manifest(t) {
		b, err := os.ReadFile(filepath.Join(dir, e.File))
		if err != nil {
			t.Fatal(err)
		}
		recs, _, _ := readAll(t, e.File, b)
		for i, r := range recs {
			crossCheck(t, e.File+"#"+itoa(i+1), r.link, r.data)
			n++
		}
	}
	t.Logf("cross-checked %d packets", n)
}

func TestDecodeGenerated(t *testing.T) {
	c := capgen.Basic()
	for i, p := range c.Packets {
		crossCheck(t, "basic#"+itoa(i+1), pcapio.LinkEthernet, p.Data)
	}
}

func itoa(i int) string { return string(binary.AppendUvarint(nil, 0)[:0]) + fmtInt(i) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func mustHex(s string) []byte {
	var out []byte
	for i := 0; i+1 < len(s); {
		if s[i] == ' ' {
			i++
			continue
		}
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			}
		}
		out = append(out, v)
		i += 2
	}
	return out
}

// Link types and encapsulations decoded by hand-built frames.
func TestDecodeLinkTypes(t *testing.T) {
	udp4 := capgen.Frame{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: layers.IPProtocolUDP, SrcPort: 1111, DstPort: 2222, Payload: []byte("hello")}
	eth := udp4.Bytes()
	ip := capgen.StripEthernet(eth)
	withIP := func(prefix string) []byte { return append(mustHex(prefix), ip...) }
	cases := []struct {
		name string
		link pcapio.LinkType
		data []byte
		vlan []uint16
		mpls int
	}{
		{"ethernet", pcapio.LinkEthernet, eth, nil, 0},
		{"raw", pcapio.LinkRaw, ip, nil, 0},
		{"ipv4", pcapio.LinkIPv4, ip, nil, 0},
		{"null-le", pcapio.LinkNull, withIP("02000000"), nil, 0},
		{"null-be", pcapio.LinkNull, withIP("00000002"), nil, 0},
		{"loop", pcapio.LinkLoop, withIP("00000002"), nil, 0},
		{"sll", pcapio.LinkLinuxSLL, withIP("0000 0001 0006 020000000001 0000 0800"), nil, 0},
		{"sll2", pcapio.LinkLinuxSLL2, withIP("0800 0000 00000002 0001 00 06 020000000001 0000"), nil, 0},
		{"ppp", pcapio.LinkPPP, withIP("ff03 0021"), nil, 0},
		{"ppp-compressed", pcapio.LinkPPP, withIP("21"), nil, 0},
		{"chdlc", pcapio.LinkCHDLC, withIP("0f00 0800"), nil, 0},
		{"qinq", pcapio.LinkEthernet, withIP("020000000002 020000000001 88a8 00c8 8100 012c 0800"), []uint16{200, 300}, 0},
		{"mpls", pcapio.LinkEthernet, withIP("020000000002 020000000001 8847 00010000 00020100"), nil, 2},
		{"vlan-mpls", pcapio.LinkEthernet, withIP("020000000002 020000000001 8100 0064 8847 00010100"), []uint16{100}, 1},
		{"pppoe", pcapio.LinkEthernet, withIP("020000000002 020000000001 8864 1100 0001 0020 0021"), nil, 0},
		{"snap", pcapio.LinkEthernet, withIP("020000000002 020000000001 0030 aaaa03 000000 0800"), nil, 0},
	}
	for _, c := range cases {
		var p pcapio.Packet
		p.Decode(c.link, c.data)
		if p.IPVersion != 4 || p.SrcPort != 1111 || p.DstPort != 2222 || p.PayloadLen != 5 ||
			!bytes.Equal(p.PayloadData(c.data), []byte("hello")) {
			t.Errorf("%s: got v%d %d>%d payload %d (problem %v)", c.name, p.IPVersion, p.SrcPort, p.DstPort, p.PayloadLen, p.Problem)
		}
		if p.NumVLAN != len(c.vlan) || p.NumMPLS != c.mpls {
			t.Errorf("%s: %d VLANs %d labels, want %d and %d", c.name, p.NumVLAN, p.NumMPLS, len(c.vlan), c.mpls)
		}
		for i, v := range c.vlan {
			if p.VLAN[i] != v {
				t.Errorf("%s: VLAN[%d]=%d want %d", c.name, i, p.VLAN[i], v)
			}
		}
	}
}

func TestDecodePaddingAndTruncation(t *testing.T) {
	f := capgen.Frame{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		Proto: layers.IPProtocolTCP, SrcPort: 1, DstPort: 2, Flags: pcapio.TCPAck, Payload: []byte("ab"),
		Trailer: []byte{0xde, 0xad, 0xbe, 0xef}}
	data := f.Bytes()
	var p pcapio.Packet
	p.Decode(pcapio.LinkEthernet, data)
	if p.PayloadLen != 2 || p.CapturedLen != 2 || p.Truncated {
		t.Errorf("padded frame: payload %d captured %d truncated %v, want 2 2 false", p.PayloadLen, p.CapturedLen, p.Truncated)
	}
	big := f
	big.Payload, big.Trailer = capgen.Text("x", 1000), nil
	data = big.Bytes()[:14+20+20+100]
	p.Decode(pcapio.LinkEthernet, data)
	if p.PayloadLen != 1000 || p.CapturedLen != 100 || !p.Truncated {
		t.Errorf("snaplen cut: payload %d captured %d truncated %v, want 1000 100 true", p.PayloadLen, p.CapturedLen, p.Truncated)
	}
	p.Decode(pcapio.LinkEthernet, data[:14+20+10])
	if !p.HasPorts || p.HasTCPHeader || p.SrcPort != 1 || p.CapturedLen != 0 {
		t.Errorf("cut inside TCP header: ports %v header %v captured %d", p.HasPorts, p.HasTCPHeader, p.CapturedLen)
	}
	for n := 0; n < len(data); n++ { // no cut may panic
		p.Decode(pcapio.LinkEthernet, data[:n])
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	c := capgen.Basic()
	var p pcapio.Packet
	allocs := testing.AllocsPerRun(10, func() {
		for _, pk := range c.Packets {
			p.Decode(pcapio.LinkEthernet, pk.Data)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per capture", allocs)
	}
}
