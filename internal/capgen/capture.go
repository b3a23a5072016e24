package capgen

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// Packet is one frame of a generated capture.
type Packet struct {
	TS      int64 // ns since the epoch
	Data    []byte
	OrigLen int // 0 means len(Data)
	Iface   int // pcapng interface
}

// Capture is a list of frames with a clock that advances by Step per frame.
type Capture struct {
	Packets []Packet
	Clock   int64 // ns; the next frame's timestamp
	Step    int64 // ns between frames
}

// New starts a capture at the given time (ns) with frames 1 ms apart,
// plus an odd number of nanoseconds so that precision loss is visible.
func New(start int64) *Capture { return &Capture{Clock: start, Step: 1_000_123} }

// Add appends a frame at the current clock and advances it.
func (c *Capture) Add(data []byte) *Packet {
	c.Packets = append(c.Packets, Packet{TS: c.Clock, Data: data})
	c.Clock += c.Step
	return &c.Packets[len(c.Packets)-1]
}

// PcapOptions selects the variant of classic pcap written.
type PcapOptions struct {
	Link      uint32
	Nanos     bool
	BigEndian bool
	SnapLen   uint32 // records are cut to it when non-zero
}

// WritePcap writes the capture as classic pcap.
func (c *Capture) WritePcap(w io.Writer, o PcapOptions) error {
	order := binary.ByteOrder(binary.LittleEndian)
	if o.BigEndian {
		order = binary.BigEndian
	}
	if o.Link == 0 {
		o.Link = 1
	}
	snap := o.SnapLen
	if snap == 0 {
		snap = 65535
	}
	var h [24]byte
	magic := uint32(0xa1b2c3d4)
	if o.Nanos {
		magic = 0xa1b23c4d
	}
	order.PutUint32(h[0:], magic)
	order.PutUint16(h[4:], 2)
	order.PutUint16(h[6:], 4)
	order.PutUint32(h[16:], snap)
	order.PutUint32(h[20:], o.Link)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	for _, p := range c.Packets {
		data := p.Data
		orig := p.OrigLen
		if orig == 0 {
			orig = len(data)
		}
		if o.SnapLen != 0 && len(data) > int(o.SnapLen) {
			data = data[:o.SnapLen]
		}
		var rh [16]byte
		frac := p.TS % 1e9
		if !o.Nanos {
			frac /= 1000
		}
		order.PutUint32(rh[0:], uint32(p.TS/1e9))
		order.PutUint32(rh[4:], uint32(frac))
		order.PutUint32(rh[8:], uint32(len(data)))
		order.PutUint32(rh[12:], uint32(orig))
		if _, err := w.Write(rh[:]); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

// NgInterface describes one pcapng interface.
type NgInterface struct {
	Link    uint16
	TsResol uint8 // if_tsresol; 0 means the default (microseconds)
}

// NgOptions selects the pcapng layout written.
type NgOptions struct {
	BigEndian  bool
	Interfaces []NgInterface
	// SectionEvery starts a new section (repeating the interfaces) after
	// this many packets; 0 means one section.
	SectionEvery int
	// Junk inserts an unknown custom block and a name resolution block
	// before every Junk-th packet; 0 means none.
	Junk int
}

// WritePcapng writes the capture as pcapng.
func (c *Capture) WritePcapng(w io.Writer, o NgOptions) error {
	order := binary.ByteOrder(binary.LittleEndian)
	if o.BigEndian {
		order = binary.BigEndian
	}
	block := func(t uint32, body []byte) []byte {
		pad := (4 - len(body)%4) % 4
		n := 12 + len(body) + pad
		b := make([]byte, n)
		order.PutUint32(b[0:], t)
		order.PutUint32(b[4:], uint32(n))
		copy(b[8:], body)
		order.PutUint32(b[n-4:], uint32(n))
		return b
	}
	var out []byte
	section := func() {
		shb := make([]byte, 16)
		order.PutUint32(shb[0:], 0x1a2b3c4d)
		order.PutUint16(shb[4:], 1)
		order.PutUint64(shb[8:], ^uint64(0))
		out = append(out, block(0x0a0d0d0a, shb)...)
		for _, ifc := range o.Interfaces {
			body := make([]byte, 8)
			order.PutUint16(body[0:], ifc.Link)
			order.PutUint32(body[4:], 0) // no snaplen limit
			if ifc.TsResol != 0 {
				opt := make([]byte, 8)
				order.PutUint16(opt[0:], 9)
				order.PutUint16(opt[2:], 1)
				opt[4] = ifc.TsResol
				body = append(body, opt...)
				body = append(body, 0, 0, 0, 0) // opt_endofopt
			}
			out = append(out, block(1, body)...)
		}
	}
	section()
	for i, p := range c.Packets {
		if o.SectionEvery > 0 && i > 0 && i%o.SectionEvery == 0 {
			section()
		}
		if o.Junk > 0 && i%o.Junk == 0 {
			out = append(out, block(0x00000bad, []byte("custom block pcapflow ignores"))...)
			nrb := make([]byte, 4+4+12+4)
			order.PutUint16(nrb[0:], 1) // nrb_record_ipv4
			order.PutUint16(nrb[2:], 4+6)
			copy(nrb[4:], []byte{10, 0, 0, 1, 'h', 'o', 's', 't', 'a', 0})
			out = append(out, block(4, nrb)...)
		}
		res := uint8(6)
		if p.Iface < len(o.Interfaces) && o.Interfaces[p.Iface].TsResol != 0 {
			res = o.Interfaces[p.Iface].TsResol
		}
		var units uint64
		switch {
		case res&0x80 != 0:
			sh := res & 0x7f
			units = uint64(p.TS/1e9)<<sh + uint64(p.TS%1e9)<<sh/1e9
		default:
			units = uint64(p.TS)
			for e := res; e < 9; e++ {
				units /= 10
			}
		}
		orig := p.OrigLen
		if orig == 0 {
			orig = len(p.Data)
		}
		body := make([]byte, 20, 20+len(p.Data))
		order.PutUint32(body[0:], uint32(p.Iface))
		order.PutUint32(body[4:], uint32(units>>32))
		order.PutUint32(body[8:], uint32(units))
		order.PutUint32(body[12:], uint32(len(p.Data)))
		order.PutUint32(body[16:], uint32(orig))
		body = append(body, p.Data...)
		out = append(out, block(6, body)...)
	}
	_, err := w.Write(out)
	return err
}

// Endpoint is one side of a conversation.
type Endpoint struct {
	MAC  net.HardwareAddr
	IP   netip.Addr
	Port uint16
}

// TCPConn generates the segments of one TCP connection, tracking each
// side's next sequence number.
type TCPConn struct {
	C     *Capture
	A, B  Endpoint
	VLANs []uint16
	QinQ  bool
	NextA uint32 // next sequence number A sends
	NextB uint32
	ipid  uint16
}

// NewTCP starts a connection from a to b with the given initial sequence
// numbers (the SYNs consume one each).
func (c *Capture) NewTCP(a, b Endpoint, isnA, isnB uint32) *TCPConn {
	return &TCPConn{C: c, A: a, B: b, NextA: isnA, NextB: isnB, ipid: 100}
}

// Segment builds (but does not add) a segment from A (fromA) or B.
func (t *TCPConn) Segment(fromA bool, flags uint8, seq uint32, payload []byte) []byte {
	src, dst := t.A, t.B
	ack := t.NextB
	if !fromA {
		src, dst = t.B, t.A
		ack = t.NextA
	}
	if flags&0x10 == 0 {
		ack = 0
	}
	t.ipid++
	f := Frame{SrcMAC: src.MAC, DstMAC: dst.MAC, VLANs: t.VLANs, QinQ: t.QinQ,
		Src: src.IP, Dst: dst.IP, Proto: layers.IPProtocolTCP, SrcPort: src.Port, DstPort: dst.Port,
		Flags: flags, Seq: seq, Ack: ack, Payload: payload, IPID: t.ipid}
	return f.Bytes()
}

// Raw adds a segment with an explicit sequence number and does not move
// the sender's next sequence number.
func (t *TCPConn) Raw(fromA bool, flags uint8, seq uint32, payload []byte) *Packet {
	return t.C.Add(t.Segment(fromA, flags, seq, payload))
}

func (t *TCPConn) next(fromA bool) *uint32 {
	if fromA {
		return &t.NextA
	}
	return &t.NextB
}

// Send adds an in-order segment and advances the sender's sequence number
// (SYN and FIN count one).
func (t *TCPConn) Send(fromA bool, flags uint8, payload []byte) *Packet {
	n := t.next(fromA)
	p := t.Raw(fromA, flags, *n, payload)
	*n += uint32(len(payload))
	if flags&0x03 != 0 { // SYN or FIN
		*n++
	}
	return p
}

// Handshake adds SYN, SYN-ACK, ACK.
func (t *TCPConn) Handshake() {
	t.Send(true, 0x02, nil)
	t.Send(false, 0x12, nil)
	t.Send(true, 0x10, nil)
}

// Data adds a PSH-ACK data segment.
func (t *TCPConn) Data(fromA bool, payload []byte) *Packet { return t.Send(fromA, 0x18, payload) }

// Ack adds a bare ACK.
func (t *TCPConn) Ack(fromA bool) *Packet { return t.Send(fromA, 0x10, nil) }

// Close adds FIN-ACK from each side and the last ACK.
func (t *TCPConn) Close() {
	t.Send(true, 0x11, nil)
	t.Send(false, 0x11, nil)
	t.Send(true, 0x10, nil)
}
