package capgen

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// TunnelCase is one encapsulated conversation of the Tunnels capture.
type TunnelCase struct {
	Name     string
	Type     string // as pcapflow names it
	ID       uint32 // VNI, key, session
	Port     uint16 // the inner client port, unique per case
	Request  string // what the inner client sends
	Response string
}

// TunnelCases lists the conversations of Tunnels, in order.
var TunnelCases = []TunnelCase{
	{"VXLAN, VNI 100", "vxlan", 100, 31001, "vni-100 request", "vni-100 response"},
	{"VXLAN, VNI 200, same inner 5-tuple", "vxlan", 200, 31001, "vni-200 request", "vni-200 response"},
	{"Geneve, VNI 300", "geneve", 300, 31003, "geneve request", "geneve response"},
	{"GRE with key 7, IPv4 inside", "gre", 7, 31004, "gre-ip request", "gre-ip response"},
	{"GRE, transparent Ethernet bridging", "gre", 0, 31005, "gre-teb request", "gre-teb response"},
	{"ERSPAN type II, session 5", "gre", 5, 31006, "erspan-2 request", "erspan-2 response"},
	{"ERSPAN type III, session 6", "gre", 6, 31007, "erspan-3 request", "erspan-3 response"},
	{"IPv4 in IPv4", "ipip", 0, 31008, "ipip request", "ipip response"},
	{"IPv6 in IPv4", "ipip", 0, 31009, "6in4 request", "6in4 response"},
	{"IPv4 in IPv6", "ipip", 0, 31010, "4in6 request", "4in6 response"},
	{"MPLS over GRE", "gre", 0, 31011, "mpls-gre request", "mpls-gre response"},
	{"GTP-U", "gtpu", 0, 31012, "gtpu request", "gtpu response"},
}

var (
	vtepA  = netip.MustParseAddr("172.16.0.1")
	vtepB  = netip.MustParseAddr("172.16.0.2")
	vtep6A = netip.MustParseAddr("2001:db8:ff::1")
	vtep6B = netip.MustParseAddr("2001:db8:ff::2")
)

// Tunnels is a capture of TCP conversations carried in each kind of
// tunnel pcapflow opens (TunnelCases): VXLAN (two VNIs with the same
// inner 5-tuple, and per-direction outer source ports, as VTEPs pick
// them for entropy), Geneve, keyed GRE, GRE with Ethernet, ERSPAN II and
// III, IPv4/IPv6 in IPv4/IPv6, MPLS over GRE and GTP-U.
func Tunnels() *Capture {
	c := New(Start)
	for i, tc := range TunnelCases {
		v6inner := tc.Name == "IPv6 in IPv4"
		cli, srv := netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("192.168.1.2")
		if v6inner {
			cli, srv = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
		}
		// The inner conversation: a handshake, a request and a response.
		inner := New(0)
		t := inner.NewTCP(Endpoint{MAC: MAC(11), IP: cli, Port: tc.Port}, Endpoint{MAC: MAC(12), IP: srv, Port: 80}, 5000, 9000)
		t.Handshake()
		t.Data(true, []byte(tc.Request))
		t.Data(false, []byte(tc.Response))
		t.Close()
		for j, p := range inner.Packets {
			fromCli := p.Data[11] == 11 // source MAC of the inner frame
			c.Add(encapsulate(i, tc, p.Data, fromCli, j))
		}
	}
	return c
}

// encapsulate wraps an inner Ethernet frame for its case.
func encapsulate(i int, tc TunnelCase, frame []byte, fromCli bool, n int) []byte {
	src, dst := vtepA, vtepB
	if !fromCli {
		src, dst = dst, src
	}
	ipOnly := StripEthernet(frame)
	outer := Frame{SrcMAC: MAC(21), DstMAC: MAC(22), Src: src, Dst: dst}
	if !fromCli {
		outer.SrcMAC, outer.DstMAC = outer.DstMAC, outer.SrcMAC
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	gre := func(flags uint16, proto uint16, extra ...[]byte) []byte {
		h := binary.BigEndian.AppendUint16(nil, flags)
		h = binary.BigEndian.AppendUint16(h, proto)
		return cat(append([][]byte{h}, extra...)...)
	}
	switch tc.Name {
	case "VXLAN, VNI 100", "VXLAN, VNI 200, same inner 5-tuple":
		outer.Proto, outer.DstPort = layers.IPProtocolUDP, 4789
		outer.SrcPort = uint16(40000 + i*10) // each direction its own entropy port
		if !fromCli {
			outer.SrcPort++
		}
		outer.Payload = cat([]byte{0x08, 0, 0, 0}, u32(tc.ID<<8), frame)
	case "Geneve, VNI 300":
		outer.Proto, outer.SrcPort, outer.DstPort = layers.IPProtocolUDP, 40100, 6081
		opt := []byte{0x01, 0x02, 0x03, 0x01, 0xaa, 0xbb, 0xcc, 0xdd} // one 4-byte option
		outer.Payload = cat([]byte{0x02, 0, 0x65, 0x58}, u32(tc.ID<<8), opt, frame)
	case "GRE with key 7, IPv4 inside":
		outer.Proto = layers.IPProtocolGRE
		outer.Payload = gre(0x2000, 0x0800, u32(tc.ID), ipOnly)
	case "GRE, transparent Ethernet bridging":
		outer.Proto = layers.IPProtocolGRE
		outer.Payload = gre(0x8000, 0x6558, []byte{0, 0, 0, 0}, frame) // with a checksum field
	case "ERSPAN type II, session 5":
		outer.Proto = layers.IPProtocolGRE
		er := cat(binary.BigEndian.AppendUint16(nil, 0x1000|10), binary.BigEndian.AppendUint16(nil, uint16(tc.ID)), u32(0))
		outer.Payload = gre(0x1000, 0x88be, u32(uint32(n)), er, frame)
	case "ERSPAN type III, session 6":
		outer.Proto = layers.IPProtocolGRE
		er := cat(binary.BigEndian.AppendUint16(nil, 0x2000|10), binary.BigEndian.AppendUint16(nil, uint16(tc.ID)), u32(uint32(n)), u32(0x01)) // O flag: an 8-byte subheader follows
		outer.Payload = gre(0x1000, 0x22eb, u32(uint32(n)), er, make([]byte, 8), frame)
	case "IPv4 in IPv4":
		outer.Proto, outer.Payload = 4, ipOnly
	case "IPv6 in IPv4":
		outer.Proto, outer.Payload = 41, ipOnly
	case "IPv4 in IPv6":
		outer.Src, outer.Dst = vtep6A, vtep6B
		if !fromCli {
			outer.Src, outer.Dst = vtep6B, vtep6A
		}
		outer.Proto, outer.Payload = 4, ipOnly
	case "MPLS over GRE":
		outer.Proto = layers.IPProtocolGRE
		outer.Payload = gre(0, 0x8847, u32(16000<<12|0x100|64), ipOnly) // one label, bottom of stack
	case "GTP-U":
		outer.Proto, outer.SrcPort, outer.DstPort = layers.IPProtocolUDP, 2152, 2152
		teid := uint32(0x1000)
		if !fromCli {
			teid = 0x2000 // each direction has its own TEID
		}
		hdr := cat([]byte{0x30, 0xff}, binary.BigEndian.AppendUint16(nil, uint16(len(ipOnly))), u32(teid))
		outer.Payload = cat(hdr, ipOnly)
	}
	return outer.Bytes()
}
