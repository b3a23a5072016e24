package pcapio

import "encoding/binary"

// Limits of the header stacks a Packet records; deeper stacks are walked
// but only the first entries are kept.
const (
	MaxVLAN = 4
	MaxMPLS = 4
	// maxExtHeaders bounds the IPv6 extension headers walked, so a hostile
	// chain cannot make decoding slow.
	maxExtHeaders = 12
)

// IP protocol numbers the decoder looks into.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// TCP flag bits, as in the TCP header's flags byte.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// Problem says why a packet could not be decoded down to a flow key.
type Problem uint8

const (
	ProblemNone            Problem = iota
	ProblemNotIP                   // a link-layer frame that carries no IP (ARP, LLDP, STP...)
	ProblemUnsupportedLink         // a link type the decoder does not know
	ProblemShortLink               // captured bytes end inside the link-layer headers
	ProblemShortIP                 // captured bytes end inside the IP header
	ProblemBadIP                   // IP version or header length field is invalid
	numProblems
)

var problemNames = [...]string{"", "non-IP frame", "unsupported link type", "truncated link-layer header", "truncated IP header", "invalid IP header"}

func (p Problem) String() string { return problemNames[p] }

// NumProblems is the number of Problem values, for counter arrays.
const NumProblems = int(numProblems)

// Packet is the decoded view of one packet's headers. Decode overwrites
// every field, so one Packet can be reused for a whole capture.
type Packet struct {
	Problem Problem

	// Link layer.
	HasSrcMAC, HasDstMAC bool
	SrcMAC, DstMAC       [6]byte
	NumVLAN              int             // tags seen (may exceed MaxVLAN)
	VLAN                 [MaxVLAN]uint16 // VLAN IDs, outermost first
	NumMPLS              int             // labels seen
	MPLS                 [MaxMPLS]uint32 // MPLS labels, outermost first
	EtherType            uint16          // type of the network layer found

	// Network layer.
	IPVersion uint8    // 4 or 6; 0 when no IP header was decoded
	Src, Dst  [16]byte // IPv4 addresses use the first 4 bytes, the rest is zero
	Proto     uint8    // upper-layer protocol (after IPv6 extension headers)
	L3Offset  int      // offset of the IP header in the data
	IPLen     int      // length of the IP datagram per its header
	// Fragments: Fragment is true for every piece of a fragmented datagram
	// (offset > 0 or more-fragments set). FragOffset is in bytes.
	Fragment      bool
	MoreFragments bool
	FragOffset    int
	FragID        uint32

	// Transport layer. L4Offset is -1 when the transport header is absent
	// (a non-first fragment) or cut off by the snaplen before the ports.
	L4Offset int
	HasPorts bool
	SrcPort  uint16 // ICMP and ICMPv6: the type
	DstPort  uint16 // ICMP and ICMPv6: the code
	// TCP fields, valid when HasTCPHeader.
	HasTCPHeader bool
	TCPFlags     uint8
	Seq, Ack     uint32
	Window       uint16

	// Payload of TCP or UDP (or, for other protocols and non-first
	// fragments, the data after the last decoded header). PayloadLen comes
	// from the IP length, so link-layer padding is never counted;
	// CapturedLen is how much of it the snaplen kept.
	PayloadOffset int
	PayloadLen    int
	CapturedLen   int
	// Truncated reports that the capture holds less of the IP datagram
	// than its header declares.
	Truncated bool
	// IPPayloadOffset and IPPayloadLen locate the IP payload (what
	// follows the IP header and its extension headers): for a fragment,
	// its piece of the datagram.
	IPPayloadOffset int
	IPPayloadLen    int

	// Tunnel, when set, is the encapsulation found in this packet's
	// payload: its ID (VNI, GRE key, ERSPAN session, TEID), where the
	// carried frame starts and what link type it has (see DecodeInner).
	Tunnel      TunnelType
	TunnelID    uint32
	InnerOffset int
	InnerLink   LinkType

	opts *DecodeOptions
}

// IPPayload returns the captured part of the IP payload.
func (p *Packet) IPPayload(data []byte) []byte {
	end := min(p.IPPayloadOffset+p.IPPayloadLen, len(data))
	if p.IPPayloadOffset >= end {
		return nil
	}
	return data[p.IPPayloadOffset:end]
}

// PayloadData returns the captured part of the payload.
func (p *Packet) PayloadData(data []byte) []byte {
	if p.CapturedLen <= 0 {
		return nil
	}
	return data[p.PayloadOffset : p.PayloadOffset+p.CapturedLen]
}

// Decode parses data, a frame of the given link type, with the default
// options. It never allocates and never reads past data.
func (p *Packet) Decode(link LinkType, data []byte) { p.DecodeWith(link, data, nil) }

// DecodeWith is Decode with options (nil for the defaults).
func (p *Packet) DecodeWith(link LinkType, data []byte, opts *DecodeOptions) {
	*p = Packet{L4Offset: -1, opts: opts}
	switch link {
	case LinkEthernet:
		if len(data) < 14 {
			p.Problem = ProblemShortLink
			return
		}
		copy(p.DstMAC[:], data[0:6])
		copy(p.SrcMAC[:], data[6:12])
		p.HasSrcMAC, p.HasDstMAC = true, true
		p.etherType(data, 14, binary.BigEndian.Uint16(data[12:]))
	case LinkLinuxSLL:
		if len(data) < 16 {
			p.Problem = ProblemShortLink
			return
		}
		if binary.BigEndian.Uint16(data[4:]) == 6 {
			copy(p.SrcMAC[:], data[6:12])
			p.HasSrcMAC = true
		}
		p.etherType(data, 16, binary.BigEndian.Uint16(data[14:]))
	case LinkLinuxSLL2:
		if len(data) < 20 {
			p.Problem = ProblemShortLink
			return
		}
		if data[11] == 6 {
			copy(p.SrcMAC[:], data[12:18])
			p.HasSrcMAC = true
		}
		p.etherType(data, 20, binary.BigEndian.Uint16(data[0:]))
	case LinkRaw, LinkRawOld12, LinkRawOld14:
		p.rawIP(data, 0)
	case LinkIPv4:
		p.ipv4(data, 0)
	case LinkIPv6:
		p.ipv6(data, 0)
	case LinkNull, LinkLoop:
		if len(data) < 4 {
			p.Problem = ProblemShortLink
			return
		}
		fam := binary.BigEndian.Uint32(data)
		if link == LinkNull && fam > 0xffff {
			fam = binary.LittleEndian.Uint32(data)
		}
		switch fam {
		case 2:
			p.ipv4(data, 4)
		case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			p.ipv6(data, 4)
		default:
			p.Problem = ProblemNotIP
		}
	case LinkPPP, LinkPPPHDLC:
		p.ppp(data, 0)
	case LinkCHDLC:
		if len(data) < 4 {
			p.Problem = ProblemShortLink
			return
		}
		p.etherType(data, 4, binary.BigEndian.Uint16(data[2:]))
	case LinkIEEE80211:
		p.wlan(data, 0)
	case LinkRadiotap:
		if len(data) < 4 {
			p.Problem = ProblemShortLink
			return
		}
		hl := int(binary.LittleEndian.Uint16(data[2:]))
		if hl < 8 || hl > len(data) {
			p.Problem = ProblemShortLink
			return
		}
		p.wlan(data, hl)
	case linkMPLS:
		p.mpls(data, 0)
	default:
		p.Problem = ProblemUnsupportedLink
	}
}

// etherType follows a chain of EtherTypes (VLAN tags, MPLS, PPPoE, SNAP)
// starting at off down to IPv4 or IPv6.
func (p *Packet) etherType(d []byte, off int, et uint16) {
	for {
		switch et {
		case 0x0800:
			p.EtherType = et
			p.ipv4(d, off)
			return
		case 0x86dd:
			p.EtherType = et
			p.ipv6(d, off)
			return
		case 0x8100, 0x88a8, 0x9100, 0x9200, 0x9300:
			if len(d)-off < 4 {
				p.Problem = ProblemShortLink
				return
			}
			if p.NumVLAN < MaxVLAN {
				p.VLAN[p.NumVLAN] = binary.BigEndian.Uint16(d[off:]) & 0x0fff
			}
			p.NumVLAN++
			et = binary.BigEndian.Uint16(d[off+2:])
			off += 4
		case 0x8847, 0x8848:
			p.mpls(d, off)
			return
		case 0x8864: // PPPoE session: 6-byte header, then PPP
			if len(d)-off < 6 {
				p.Problem = ProblemShortLink
				return
			}
			p.ppp(d, off+6)
			return
		default:
			if et <= 1500 && len(d)-off >= 8 && d[off] == 0xaa && d[off+1] == 0xaa && d[off+2] == 0x03 {
				// 802.2 LLC with a SNAP header carrying an EtherType.
				et = binary.BigEndian.Uint16(d[off+6:])
				off += 8
				continue
			}
			p.EtherType = et
			p.Problem = ProblemNotIP
			return
		}
	}
}

func (p *Packet) mpls(d []byte, off int) {
	for {
		if len(d)-off < 4 {
			p.Problem = ProblemShortLink
			return
		}
		v := binary.BigEndian.Uint32(d[off:])
		if p.NumMPLS < MaxMPLS {
			p.MPLS[p.NumMPLS] = v >> 12
		}
		p.NumMPLS++
		off += 4
		if v&0x100 != 0 {
			break
		}
	}
	// MPLS does not say what it carries; IP is recognised by its version.
	if len(d) > off && (d[off]>>4 == 4 || d[off]>>4 == 6) {
		p.rawIP(d, off)
		return
	}
	p.Problem = ProblemNotIP
}

func (p *Packet) ppp(d []byte, off int) {
	if len(d)-off >= 2 && d[off] == 0xff && d[off+1] == 0x03 {
		off += 2
	}
	if len(d)-off < 1 {
		p.Problem = ProblemShortLink
		return
	}
	var proto uint16
	if d[off]&1 != 0 { // protocol field compressed to one byte
		proto = uint16(d[off])
		off++
	} else {
		if len(d)-off < 2 {
			p.Problem = ProblemShortLink
			return
		}
		proto = binary.BigEndian.Uint16(d[off:])
		off += 2
	}
	switch proto {
	case 0x0021:
		p.ipVersion(4, d, off)
	case 0x0057:
		p.ipVersion(6, d, off)
	case 0x0281, 0x0283:
		p.mpls(d, off)
	default:
		p.Problem = ProblemNotIP
	}
}

func (p *Packet) rawIP(d []byte, off int) {
	if len(d) <= off {
		p.Problem = ProblemShortIP
		return
	}
	if !p.ipVersion(d[off]>>4, d, off) {
		p.Problem = ProblemBadIP
	}
}

// ipVersion decodes the IP datagram at off of a link that carries IP
// without an EtherType (raw IP, PPP), as if it had the EtherType of its
// version; it reports false for a version other than 4 and 6.
func (p *Packet) ipVersion(v byte, d []byte, off int) bool {
	switch v {
	case 4:
		p.EtherType = 0x0800
		p.ipv4(d, off)
	case 6:
		p.EtherType = 0x86dd
		p.ipv6(d, off)
	default:
		return false
	}
	return true
}

func (p *Packet) ipv4(d []byte, off int) {
	p.L3Offset = off
	if len(d)-off < 20 {
		p.Problem = ProblemShortIP
		return
	}
	vihl := d[off]
	ihl := int(vihl&0x0f) * 4
	if vihl>>4 != 4 || ihl < 20 {
		p.Problem = ProblemBadIP
		return
	}
	if len(d)-off < ihl {
		p.Problem = ProblemShortIP
		return
	}
	p.IPVersion = 4
	total := int(binary.BigEndian.Uint16(d[off+2:]))
	if total == 0 {
		// TCP segmentation offload leaves the length zero; the frame is
		// all there is.
		total = len(d) - off
	}
	if total < ihl {
		total = ihl
	}
	p.IPLen = total
	p.FragID = uint32(binary.BigEndian.Uint16(d[off+4:]))
	fo := binary.BigEndian.Uint16(d[off+6:])
	p.MoreFragments = fo&0x2000 != 0
	p.FragOffset = int(fo&0x1fff) * 8
	p.Fragment = p.MoreFragments || p.FragOffset != 0
	p.Proto = d[off+9]
	copy(p.Src[:4], d[off+12:off+16])
	copy(p.Dst[:4], d[off+16:off+20])
	end := off + total
	p.transport(d, off+ihl, end)
}

func (p *Packet) ipv6(d []byte, off int) {
	p.L3Offset = off
	if len(d)-off < 40 {
		p.Problem = ProblemShortIP
		return
	}
	if d[off]>>4 != 6 {
		p.Problem = ProblemBadIP
		return
	}
	p.IPVersion = 6
	plen := int(binary.BigEndian.Uint16(d[off+4:]))
	next := d[off+6]
	copy(p.Src[:], d[off+8:off+24])
	copy(p.Dst[:], d[off+24:off+40])
	end := off + 40 + plen
	if plen == 0 {
		end = len(d) // jumbogram or offload: the frame is all there is
	}
	p.IPLen = end - off
	cur := off + 40
walk:
	for i := 0; i < maxExtHeaders; i++ {
		switch next {
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(d)-cur < 2 {
				break walk
			}
			hl := (int(d[cur+1]) + 1) * 8
			if next == 43 && len(d)-cur >= hl {
				p.routingDst(d[cur : cur+hl])
			}
			next = d[cur]
			cur += hl
		case 51: // authentication header
			if len(d)-cur < 2 {
				break walk
			}
			next = d[cur]
			cur += (int(d[cur+1]) + 2) * 4
		case 44: // fragment
			if len(d)-cur < 8 {
				break walk
			}
			next = d[cur]
			fo := binary.BigEndian.Uint16(d[cur+2:])
			p.FragOffset = int(fo &^ 7)
			p.MoreFragments = fo&1 != 0
			p.Fragment = p.MoreFragments || p.FragOffset != 0
			p.FragID = binary.BigEndian.Uint32(d[cur+4:])
			cur += 8
		default:
			break walk
		}
	}
	p.Proto = next
	if cur > end {
		cur = end
	}
	p.transport(d, cur, end)
}

// routingDst makes the final destination of a routing header with
// segments left the packet's destination, as the transport checksum and
// the conversation see it (RFC 8200 4.4): types 0 and 2 list it last,
// segment routing (type 4) lists it first.
func (p *Packet) routingDst(rh []byte) {
	if len(rh) < 8 || rh[3] == 0 {
		return
	}
	n := (len(rh) - 8) / 16
	switch rh[2] {
	case 0, 2:
		if n > 0 {
			copy(p.Dst[:], rh[8+16*(n-1):8+16*n])
		}
	case 4:
		if n > 0 {
			copy(p.Dst[:], rh[8:24])
		}
	}
}

// transport decodes the TCP, UDP or ICMP header at l4, in an IP datagram
// ending at end (per the IP header).
func (p *Packet) transport(d []byte, l4, end int) {
	capEnd := min(end, len(d))
	p.Truncated = end > len(d)
	if l4 > capEnd {
		l4 = capEnd
	}
	p.IPPayloadOffset, p.IPPayloadLen = l4, max(end-l4, 0)
	p.PayloadOffset = l4
	if p.FragOffset != 0 {
		// A non-first fragment carries the middle of a datagram, no header.
		p.setPayload(l4, end, capEnd)
		return
	}
	avail := capEnd - l4
	switch p.Proto {
	case ProtoTCP:
		if !p.portPair(d, l4, end, capEnd) {
			return
		}
		if avail < 20 {
			p.setPayload(capEnd, end, capEnd)
			return
		}
		p.HasTCPHeader = true
		p.Seq = binary.BigEndian.Uint32(d[l4+4:])
		p.Ack = binary.BigEndian.Uint32(d[l4+8:])
		p.TCPFlags = d[l4+13]
		p.Window = binary.BigEndian.Uint16(d[l4+14:])
		hl := int(d[l4+12]>>4) * 4
		if hl < 20 {
			hl = 20
		}
		p.setPayload(l4+hl, end, capEnd)
	case ProtoUDP:
		if !p.portPair(d, l4, end, capEnd) {
			return
		}
		if avail >= 8 && !p.Fragment {
			// The UDP length can only shorten the datagram (trailing
			// bytes inside the IP packet are not UDP data).
			if ul := int(binary.BigEndian.Uint16(d[l4+4:])); ul >= 8 && l4+ul < end {
				end = l4 + ul
				capEnd = min(end, len(d))
			}
		}
		p.setPayload(l4+8, end, capEnd)
		if !p.Fragment && p.CapturedLen > 0 {
			p.udpTunnel(d[:capEnd], l4+8, p.opts)
		}
	case ProtoICMP, ProtoICMPv6:
		if avail < 2 {
			p.setPayload(l4, end, capEnd)
			return
		}
		p.L4Offset, p.HasPorts = l4, true
		p.SrcPort, p.DstPort = uint16(d[l4]), uint16(d[l4+1])
		p.setPayload(min(l4+8, end), end, capEnd)
	case ProtoSCTP:
		if !p.portPair(d, l4, end, capEnd) {
			return
		}
		p.setPayload(min(l4+12, end), end, capEnd)
	default:
		p.setPayload(l4, end, capEnd)
		if !p.Fragment {
			p.ipTunnel(d[:capEnd], l4, p.opts)
		}
	}
}

// portPair reads the 16-bit source and destination ports that TCP, UDP
// and SCTP headers start with; without 4 bytes for them, the payload
// starts at l4 and it reports false.
func (p *Packet) portPair(d []byte, l4, end, capEnd int) bool {
	if capEnd-l4 < 4 {
		p.setPayload(l4, end, capEnd)
		return false
	}
	p.L4Offset, p.HasPorts = l4, true
	p.SrcPort = binary.BigEndian.Uint16(d[l4:])
	p.DstPort = binary.BigEndian.Uint16(d[l4+2:])
	return true
}

func (p *Packet) setPayload(at, end, capEnd int) {
	p.PayloadOffset = at
	p.PayloadLen = max(end-at, 0)
	p.CapturedLen = max(min(capEnd, end)-at, 0)
}

// DecodeTransport decodes the transport header at the start of l4, the
// payload of a reassembled IP datagram of protocol p.Proto, into p's
// transport fields; offsets then refer to l4.
func (p *Packet) DecodeTransport(l4 []byte) {
	p.Fragment, p.MoreFragments, p.FragOffset = false, false, 0
	p.L4Offset, p.HasPorts, p.HasTCPHeader = -1, false, false
	p.Truncated = false
	p.transport(l4, 0, len(l4))
}
