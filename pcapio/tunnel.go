package pcapio

import "encoding/binary"

// TunnelType names an encapsulation the decoder recognises after a
// packet's IP or UDP header.
type TunnelType uint8

const (
	TunnelNone   TunnelType = iota
	TunnelVXLAN             // UDP 4789 (and 8472), VNI
	TunnelGeneve            // UDP 6081, VNI
	TunnelGRE               // IP protocol 47, key when present (ERSPAN: session ID)
	TunnelIPIP              // IPv4/IPv6 in IPv4/IPv6 (protocols 4 and 41)
	TunnelGTPU              // UDP 2152, TEID
	numTunnels
)

var tunnelNames = [...]string{"", "vxlan", "geneve", "gre", "ipip", "gtpu"}

func (t TunnelType) String() string {
	if t < numTunnels {
		return tunnelNames[t]
	}
	return "tunnel"
}

// ParseTunnelType reads a tunnel name.
func ParseTunnelType(s string) (TunnelType, bool) {
	for i, n := range tunnelNames {
		if i > 0 && n == s {
			return TunnelType(i), true
		}
	}
	return 0, false
}

// DecodeOptions tune what the decoder recognises.
type DecodeOptions struct {
	// VXLANPorts are the UDP destination ports of VXLAN (default 4789
	// and 8472, the Linux default).
	VXLANPorts []uint16
	// NoTunnels turns decapsulation off.
	NoTunnels bool
}

var defaultVXLAN = []uint16{4789, 8472}

// Encapsulated link types for Inner: an Ethernet frame, an IP packet, an
// 802.11 frame, or a PPP frame.
const (
	innerEther = LinkEthernet
	innerIP    = LinkRaw
	innerWLAN  = LinkIEEE80211
	innerPPP   = LinkPPP
)

// DecodeInner decodes the packet a tunnel carries (after Decode found
// p.Tunnel); the inner packet's data starts at p.InnerOffset.
func (inner *Packet) DecodeInner(outer *Packet, data []byte, opts *DecodeOptions) {
	inner.DecodeWith(outer.InnerLink, data[outer.InnerOffset:], opts)
}

// udpTunnel recognises a tunnel in a UDP datagram whose payload starts
// at off.
func (p *Packet) udpTunnel(d []byte, off int, opts *DecodeOptions) {
	if opts != nil && opts.NoTunnels {
		return
	}
	ports := defaultVXLAN
	if opts != nil && opts.VXLANPorts != nil {
		ports = opts.VXLANPorts
	}
	rest := len(d) - off
	switch {
	case contains(ports, p.DstPort):
		// VXLAN: flags (I bit 0x08), 3 reserved, VNI (24 bits), reserved.
		if rest >= 8+14 && d[off]&0x08 != 0 {
			p.setTunnel(TunnelVXLAN, binary.BigEndian.Uint32(d[off+4:])>>8, off+8, innerEther)
		}
	case p.DstPort == 6081:
		// Geneve: version and option length (in 4-byte words), flags,
		// protocol type, VNI (24 bits), reserved, options.
		if rest < 8 || d[off]>>6 != 0 {
			return
		}
		hl := 8 + int(d[off]&0x3f)*4
		if rest < hl {
			return
		}
		if link, ok := etherTypeLink(binary.BigEndian.Uint16(d[off+2:])); ok {
			p.setTunnel(TunnelGeneve, binary.BigEndian.Uint32(d[off+4:])>>8, off+hl, link)
		}
	case p.DstPort == 2152 || p.SrcPort == 2152:
		// GTP-U version 1, G-PDU (type 255): flags, type, length, TEID,
		// then the optional sequence/N-PDU/next-extension word and any
		// extension headers.
		if rest < 8 || d[off]>>5 != 1 || d[off+1] != 255 {
			return
		}
		hl := 8
		if d[off]&0x07 != 0 {
			if rest < 12 {
				return
			}
			hl = 12
			for next := d[off+11]; next != 0; {
				if rest < hl+1 {
					return
				}
				el := int(d[off+hl]) * 4
				if el == 0 || rest < hl+el {
					return
				}
				next = d[off+hl+el-1]
				hl += el
			}
		}
		if rest > hl && (d[off+hl]>>4 == 4 || d[off+hl]>>4 == 6) {
			p.setTunnel(TunnelGTPU, binary.BigEndian.Uint32(d[off+4:]), off+hl, innerIP)
		}
	}
}

// ipTunnel recognises GRE and IP-in-IP at the start of an IP payload.
func (p *Packet) ipTunnel(d []byte, off int, opts *DecodeOptions) {
	if opts != nil && opts.NoTunnels {
		return
	}
	rest := len(d) - off
	switch p.Proto {
	case 4, 41: // IPv4 or IPv6 in IP
		if rest >= 20 {
			p.setTunnel(TunnelIPIP, 0, off, innerIP)
		}
	case 47: // GRE
		if rest < 4 {
			return
		}
		flags := binary.BigEndian.Uint16(d[off:])
		proto := binary.BigEndian.Uint16(d[off+2:])
		ver := flags & 7
		hl := 4
		if flags&0x8000 != 0 || flags&0x4000 != 0 { // checksum (or routing) present
			hl += 4
		}
		var key uint32
		if flags&0x2000 != 0 {
			if rest < hl+4 {
				return
			}
			key = binary.BigEndian.Uint32(d[off+hl:])
			hl += 4
		}
		seq := flags&0x1000 != 0
		if seq {
			hl += 4
		}
		if ver == 1 { // enhanced GRE (PPTP): the key is payload length and call ID
			key &= 0xffff
			if flags&0x0080 != 0 { // acknowledgment number present
				hl += 4
			}
		}
		if rest < hl {
			return
		}
		switch proto {
		case 0x88be: // ERSPAN type II (type I when there is no sequence number)
			if seq {
				if rest < hl+8 {
					return
				}
				key = uint32(binary.BigEndian.Uint16(d[off+hl+2:]) & 0x3ff) // session ID
				hl += 8
			}
			p.setTunnel(TunnelGRE, key, off+hl, innerEther)
		case 0x22eb: // ERSPAN type III: 12 bytes, and 8 more with the O flag
			if rest < hl+12 {
				return
			}
			key = uint32(binary.BigEndian.Uint16(d[off+hl+2:]) & 0x3ff)
			o := d[off+hl+11]&0x01 != 0
			hl += 12
			if o { // platform-specific subheader
				hl += 8
				if rest < hl {
					return
				}
			}
			p.setTunnel(TunnelGRE, key, off+hl, innerEther)
		case 0x8200, 0x8210: // Aruba: 802.11 frames
			p.setTunnel(TunnelGRE, key, off+hl, innerWLAN)
		case 0x880b: // PPP (PPTP)
			p.setTunnel(TunnelGRE, key, off+hl, innerPPP)
		default:
			if link, ok := etherTypeLink(proto); ok {
				p.setTunnel(TunnelGRE, key, off+hl, link)
			}
		}
	}
}

// etherTypeLink maps the EtherType a tunnel names to the link type of
// what follows.
func etherTypeLink(et uint16) (LinkType, bool) {
	switch et {
	case 0x6558: // transparent Ethernet bridging
		return innerEther, true
	case 0x0800, 0x86dd:
		return innerIP, true
	case 0x8847, 0x8848:
		return linkMPLS, true
	}
	return 0, false
}

func (p *Packet) setTunnel(t TunnelType, id uint32, off int, link LinkType) {
	p.Tunnel, p.TunnelID, p.InnerOffset, p.InnerLink = t, id, off, link
}

func contains(ps []uint16, v uint16) bool {
	for _, p := range ps {
		if p == v {
			return true
		}
	}
	return false
}

// wlan decodes an IEEE 802.11 data frame down to its LLC/SNAP payload.
func (p *Packet) wlan(d []byte, off int) {
	if len(d)-off < 24 {
		p.Problem = ProblemShortLink
		return
	}
	fc0, fc1 := d[off], d[off+1]
	if (fc0>>2)&3 != 2 || fc1&0x40 != 0 { // not a data frame, or encrypted
		p.Problem = ProblemNotIP
		return
	}
	toDS, fromDS := fc1&0x01 != 0, fc1&0x02 != 0
	hl := 24
	if toDS && fromDS {
		hl += 6
	}
	if (fc0>>4)&0x8 != 0 { // QoS data
		hl += 2
		if fc1&0x80 != 0 { // +HTC
			hl += 4
		}
	}
	if (fc0>>4)&0x4 != 0 { // null data: no payload
		p.Problem = ProblemNotIP
		return
	}
	a1, a2, a3 := d[off+4:off+10], d[off+10:off+16], d[off+16:off+22]
	var sa, da []byte
	switch {
	case !toDS && !fromDS:
		da, sa = a1, a2
	case toDS && !fromDS:
		da, sa = a3, a2
	case !toDS && fromDS:
		da, sa = a1, a3
	default:
		if len(d)-off < 30 {
			p.Problem = ProblemShortLink
			return
		}
		da, sa = a3, d[off+24:off+30]
	}
	copy(p.DstMAC[:], da)
	copy(p.SrcMAC[:], sa)
	p.HasSrcMAC, p.HasDstMAC = true, true
	off += hl
	if len(d)-off >= 8 && d[off] == 0xaa && d[off+1] == 0xaa && d[off+2] == 0x03 {
		p.etherType(d, off+8, binary.BigEndian.Uint16(d[off+6:]))
		return
	}
	p.Problem = ProblemNotIP
}
