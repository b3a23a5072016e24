// Package capgen builds small, deterministic captures for tests: frames
// from a handful of declarative specs (built with gopacket's layers, so an
// independent encoder produces what our decoder reads) and TCP
// conversations that keep their own sequence numbers.
package capgen

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame describes one Ethernet frame carrying IP.
type Frame struct {
	SrcMAC, DstMAC net.HardwareAddr
	VLANs          []uint16 // outermost first; the first uses 802.1ad when QinQ is set
	QinQ           bool
	Src, Dst       netip.Addr
	Proto          layers.IPProtocol
	SrcPort        uint16
	DstPort        uint16
	// TCP
	Flags    uint8 // pcapio.TCP* bits
	Seq, Ack uint32
	Window   uint16
	// ICMP/ICMPv6 type and code (in SrcPort/DstPort for symmetry with the
	// flow key would be confusing; they have their own fields).
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16
	Payload            []byte
	IPID               uint16
	TTL                uint8
	// PadTo pads the Ethernet frame with this many bytes of trailer
	// after the IP datagram (beyond the 60-byte minimum padding).
	Trailer []byte
}

// MAC returns a locally administered MAC address ending in n.
func MAC(n byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, n} }

func ipLayer(f *Frame, proto layers.IPProtocol) gopacket.SerializableLayer {
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	if f.Src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: f.IPID, Protocol: proto,
			SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
	}
	return &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto,
		SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
}

// linkLayers returns the Ethernet and VLAN layers for f, ending with
// the EtherType of the IP version.
func linkLayers(f *Frame) []gopacket.SerializableLayer {
	et := layers.EthernetTypeIPv4
	if f.Src.Is6() {
		et = layers.EthernetTypeIPv6
	}
	src, dst := f.SrcMAC, f.DstMAC
	if src == nil {
		src = MAC(1)
	}
	if dst == nil {
		dst = MAC(2)
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: et}
	ls := []gopacket.SerializableLayer{eth}
	for i, v := range f.VLANs {
		tagType := layers.EthernetTypeDot1Q
		if i == 0 && f.QinQ {
			tagType = layers.EthernetTypeQinQ
		}
		if i == 0 {
			eth.EthernetType = tagType
		} else {
			ls[len(ls)-1].(*layers.Dot1Q).Type = tagType
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: v, Type: et})
	}
	return ls
}

// Bytes encodes the frame.
func (f *Frame) Bytes() []byte {
	ls := linkLayers(f)
	ls = append(ls, f.L3()...)
	return serialize(ls, f.Trailer)
}

// L3 returns the IP and transport layers of the frame, for use inside
// other encapsulations.
func (f *Frame) L3() []gopacket.SerializableLayer {
	proto := f.Proto
	ip := ipLayer(f, proto)
	var l4 gopacket.SerializableLayer
	switch proto {
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(f.SrcPort), DstPort: layers.TCPPort(f.DstPort),
			Seq: f.Seq, Ack: f.Ack, Window: f.Window, DataOffset: 5,
			FIN: f.Flags&0x01 != 0, SYN: f.Flags&0x02 != 0, RST: f.Flags&0x04 != 0,
			PSH: f.Flags&0x08 != 0, ACK: f.Flags&0x10 != 0, URG: f.Flags&0x20 != 0}
		if t.Window == 0 {
			t.Window = 65535
		}
		t.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
		l4 = t
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(f.SrcPort), DstPort: layers.UDPPort(f.DstPort)}
		u.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
		l4 = u
	case layers.IPProtocolICMPv4:
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(f.ICMPType, f.ICMPCode), Id: f.ICMPID, Seq: f.ICMPSeq}
	case layers.IPProtocolICMPv6:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(f.ICMPType, f.ICMPCode)}
		ic.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
		var idseq [4]byte
		binary.BigEndian.PutUint16(idseq[:], f.ICMPID)
		binary.BigEndian.PutUint16(idseq[2:], f.ICMPSeq)
		return []gopacket.SerializableLayer{ip, ic, gopacket.Payload(append(idseq[:], f.Payload...))}
	}
	if proto != layers.IPProtocolTCP && proto != layers.IPProtocolUDP && proto != layers.IPProtocolICMPv4 && f.Src.Is6() {
		ls := []gopacket.SerializableLayer{ip}
		return append(ls, gopacket.Payload(f.Payload))
	}
	ls := []gopacket.SerializableLayer{ip}
	if l4 != nil {
		ls = append(ls, l4)
	}
	return append(ls, gopacket.Payload(f.Payload))
}

func serialize(ls []gopacket.SerializableLayer, trailer []byte) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	b = append(b, trailer...)
	if len(b) < 60 && len(ls) > 0 {
		if _, ok := ls[0].(*layers.Ethernet); ok {
			b = append(b, make([]byte, 60-len(b))...) // Ethernet minimum frame, zero padding
		}
	}
	return b
}

// Fragments4 encodes f's IPv4 datagram as fragments carrying at most
// size payload bytes each (size is rounded down to a multiple of 8).
func Fragments4(f *Frame, size int) [][]byte {
	size &^= 7
	whole := serialize(append([]gopacket.SerializableLayer{}, f.L3()...), nil)
	ihl := int(whole[0]&0x0f) * 4
	body := whole[ihl:]
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: f.IPID, Protocol: f.Proto,
			SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice(), FragOffset: uint16(off / 8)}
		if end < len(body) {
			ip.Flags = layers.IPv4MoreFragments
		}
		ls := linkLayers(f)
		ls = append(ls, ip, gopacket.Payload(body[off:end]))
		out = append(out, serialize(ls, nil))
	}
	return out
}

// Fragments6 encodes f's IPv6 datagram as fragments with a fragment
// extension header, each carrying at most size payload bytes.
func Fragments6(f *Frame, size int, id uint32) [][]byte {
	size &^= 7
	whole := serialize(append([]gopacket.SerializableLayer{}, f.L3()...), nil)
	body := whole[40:]
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		var fh [8]byte
		fh[0] = byte(f.Proto)
		fo := uint16(off)
		if end < len(body) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment,
			SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
		ls := linkLayers(f)
		ls = append(ls, ip, gopacket.Payload(append(fh[:], body[off:end]...)))
		out = append(out, serialize(ls, nil))
	}
	return out
}

// ARP returns an ARP request frame (a non-IP frame).
func ARP() []byte {
	eth := &layers.Ethernet{SrcMAC: MAC(1), DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: MAC(1), SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}}
	return serialize([]gopacket.SerializableLayer{eth, arp}, nil)
}

// StripEthernet returns the IP datagram of an untagged Ethernet frame
// (for raw-IP link types), without padding.
func StripEthernet(frame []byte) []byte {
	ip := frame[14:]
	var n int
	if ip[0]>>4 == 4 {
		n = int(binary.BigEndian.Uint16(ip[2:]))
	} else {
		n = 40 + int(binary.BigEndian.Uint16(ip[4:]))
	}
	return bytes.Clone(ip[:n])
}
