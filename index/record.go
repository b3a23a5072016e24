package index

import (
	"encoding/binary"
	"errors"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Flow records are stored in blocks of the flowBlock consecutive IDs
// from a multiple of flowBlock (plus one) on; the key holds the first.
// A block is
//
//	uvarint(holes) record*
//
// where bit i of holes marks ID first+i as stored alone (under an L key:
// the flow outlived its block, see writer.go); the records are those of
// the other IDs in order, as many as the block holds. A record is
//
//	uvarint flags: bits 0-2 VLAN count, 3 IPv6, 4 src MAC, 5 dst MAC,
//	        6 tunnel, 7 key mirrors peer, 8 MACs mirror peer,
//	        9 state and history mirror peer, 10 has peer,
//	        11 capture differs from the previous record's (0 at first)
//	[varint(capture - previous capture)]
//	[varint(peer - ID)]
//	[proto u8, src, dst (4 or 16 bytes), uvarint sport, dport, VLAN IDs,
//	 [u8 tunnel type, uvarint tunnel ID, tunnel endpoints]]                          unless key mirrors
//	[varint(outer flow - ID), u8 depth]                                              with the tunnel bit
//	[src MAC] [dst MAC]                                                              unless MACs mirror
//	uvarint packets, bytes, payload bytes
//	varint(first - previous record's first), uvarint(last - first)
//	u8 TCP flags, [u8 state, uvarint len(history), history]                          unless they mirror
//	uvarint missing, retrans, overlap bytes
//
// "Mirrors peer" means the peer is earlier in the same block and this
// flow's key is its reverse, its MACs are the peer's swapped, or its
// connection state and history are the peer's: the second direction of a
// conversation costs about a third of the first. The Community ID is a
// function of the key and is recomputed on reading.

var errCorrupt = errors.New("corrupt index record")

const (
	recKeyMirror  = 1 << 7
	recMACMirror  = 1 << 8
	recConnMirror = 1 << 9
	recHasPeer    = 1 << 10
	recCapture    = 1 << 11
)

// blockEncoder encodes one block of flow records.
type blockEncoder struct {
	b         []byte
	first     uint64
	next      uint64 // the ID after the last one added
	holes     uint64
	have      uint64 // IDs added, as bits
	prevFirst int64
	prevCap   int
	flows     [flowBlock]flow.Flow // by ID - first
}

// reset starts a block whose first ID is first.
func (e *blockEncoder) reset(first uint64) {
	e.b = e.b[:0]
	e.first, e.next, e.holes, e.have, e.prevFirst, e.prevCap = first, first, 0, 0, 0, 0
}

// hole marks ID id (the next one) as stored alone.
func (e *blockEncoder) hole(id uint64) {
	e.holes |= 1 << (id - e.first)
	e.next = id + 1
}

// bytes returns the encoded block.
func (e *blockEncoder) bytes(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, e.holes)
	return append(dst, e.b...)
}

// peerInBlock returns the peer of f when it was encoded earlier in the
// block (have: the IDs encoded, as bits).
func peerInBlock(flows []flow.Flow, first, have uint64, f *flow.Flow) *flow.Flow {
	if f.Peer < first || f.Peer >= f.ID || f.Peer-first >= flowBlock || have&(1<<(f.Peer-first)) == 0 {
		return nil
	}
	return &flows[f.Peer-first]
}

func (e *blockEncoder) add(f *flow.Flow) {
	b := e.b
	k := &f.Key
	fl := uint64(k.NumVLAN)
	if k.IPVersion == 6 {
		fl |= 1 << 3
	}
	if f.HasSrcMAC {
		fl |= 1 << 4
	}
	if f.HasDstMAC {
		fl |= 1 << 5
	}
	if k.TunnelType != 0 {
		fl |= 1 << 6
	}
	if f.Peer != 0 {
		fl |= recHasPeer
	}
	if f.Capture != e.prevCap {
		fl |= recCapture
	}
	if f.ID < e.next || f.ID-e.first >= flowBlock {
		panic("index: flows added to a block out of order")
	}
	for ; e.next < f.ID; e.next++ {
		e.holes |= 1 << (e.next - e.first) // IDs skipped are stored alone
	}
	e.next = f.ID + 1
	if p := peerInBlock(e.flows[:], e.first, e.have, f); p != nil {
		if p.Key.Reverse() == *k {
			fl |= recKeyMirror
		}
		if f.HasSrcMAC == p.HasDstMAC && f.HasDstMAC == p.HasSrcMAC && f.SrcMAC == p.DstMAC && f.DstMAC == p.SrcMAC {
			fl |= recMACMirror
		}
		if f.State == p.State && f.History == p.History {
			fl |= recConnMirror
		}
	}
	b = binary.AppendUvarint(b, fl)
	if fl&recCapture != 0 {
		b = binary.AppendVarint(b, int64(f.Capture-e.prevCap))
	}
	if f.Peer != 0 {
		b = binary.AppendVarint(b, int64(f.Peer-f.ID))
	}
	if fl&recKeyMirror == 0 {
		b = append(b, k.Proto)
		alen := 4
		if k.IPVersion == 6 {
			alen = 16
		}
		b = append(b, k.Src[:alen]...)
		b = append(b, k.Dst[:alen]...)
		b = binary.AppendUvarint(b, uint64(k.SrcPort))
		b = binary.AppendUvarint(b, uint64(k.DstPort))
		for _, v := range k.VLANs() {
			b = binary.AppendUvarint(b, uint64(v))
		}
		if k.TunnelType != 0 {
			b = append(b, byte(k.TunnelType))
			b = binary.AppendUvarint(b, uint64(k.TunnelID))
			b = binary.AppendUvarint(b, uint64(k.Tunnel))
		}
	}
	if k.TunnelType != 0 {
		b = binary.AppendVarint(b, int64(f.Outer-f.ID))
		b = append(b, f.Depth)
	}
	if fl&recMACMirror == 0 {
		if f.HasSrcMAC {
			b = append(b, f.SrcMAC[:]...)
		}
		if f.HasDstMAC {
			b = append(b, f.DstMAC[:]...)
		}
	}
	b = binary.AppendUvarint(b, f.Packets)
	b = binary.AppendUvarint(b, f.Bytes)
	b = binary.AppendUvarint(b, f.PayloadBytes)
	b = binary.AppendVarint(b, f.First-e.prevFirst)
	b = binary.AppendUvarint(b, uint64(f.Last-f.First))
	b = append(b, f.TCPFlags)
	if fl&recConnMirror == 0 {
		b = append(b, byte(f.State))
		b = binary.AppendUvarint(b, uint64(f.History.Len()))
		b = f.History.Append(b)
	}
	b = binary.AppendUvarint(b, f.MissingBytes)
	b = binary.AppendUvarint(b, f.RetransBytes)
	b = binary.AppendUvarint(b, f.OverlapBytes)
	e.b = b
	e.prevFirst = f.First
	e.prevCap = f.Capture
	e.flows[f.ID-e.first] = *f
	e.have |= 1 << (f.ID - e.first)
}

// recordDecoder decodes the records of one block in order.
type recordDecoder struct {
	b         []byte
	err       error
	first     uint64
	pos       uint64 // ID - first of the next record
	holes     uint64
	have      uint64
	capture   int
	prevFirst int64
	flows     [flowBlock]flow.Flow
}

// start begins decoding block b whose first flow is first.
func (d *recordDecoder) start(b []byte, first uint64) {
	d.b, d.err, d.first, d.pos, d.have, d.prevFirst, d.capture = b, nil, first, 0, 0, 0, 0
	d.holes = d.uvarint()
	d.skipHoles()
}

func (d *recordDecoder) skipHoles() {
	for d.pos < flowBlock && d.holes&(1<<d.pos) != 0 {
		d.pos++
	}
}

// more reports whether records remain.
func (d *recordDecoder) more() bool { return len(d.b) > 0 && d.err == nil && d.pos < flowBlock }

// nextID is the ID of the next record.
func (d *recordDecoder) nextID() uint64 { return d.first + d.pos }

// isHole reports whether the block stores ID id elsewhere.
func (d *recordDecoder) isHole(id uint64) bool {
	return id >= d.first && id-d.first < flowBlock && d.holes&(1<<(id-d.first)) != 0
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.err = errCorrupt
		d.b = nil
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// next decodes the next record into f.
func (d *recordDecoder) next(f *flow.Flow) error {
	if d.pos >= flowBlock {
		return errCorrupt
	}
	fl := d.uvarint()
	if fl&recCapture != 0 {
		d.capture += int(d.varint())
		if d.capture < 0 {
			return errCorrupt
		}
	}
	*f = flow.Flow{ID: d.first + d.pos, Capture: d.capture}
	if fl&recHasPeer != 0 {
		f.Peer = uint64(int64(f.ID) + d.varint())
	}
	var p *flow.Flow
	if fl&(recKeyMirror|recMACMirror|recConnMirror) != 0 {
		if p = peerInBlock(d.flows[:], d.first, d.have, f); p == nil {
			return errCorrupt
		}
	}
	k := &f.Key
	if fl&recKeyMirror != 0 {
		*k = p.Key.Reverse()
	} else {
		k.Proto = d.bytes(1)[0]
		k.IPVersion = 4
		alen := 4
		if fl&(1<<3) != 0 {
			k.IPVersion, alen = 6, 16
		}
		copy(k.Src[:], d.bytes(alen))
		copy(k.Dst[:], d.bytes(alen))
		k.SrcPort = uint16(d.uvarint())
		k.DstPort = uint16(d.uvarint())
		k.NumVLAN = uint8(fl & 7)
		if k.NumVLAN > flow.MaxVLAN {
			return errCorrupt
		}
		for i := 0; i < int(k.NumVLAN); i++ {
			k.VLAN[i] = uint16(d.uvarint())
		}
		if fl&(1<<6) != 0 {
			k.TunnelType = pcapio.TunnelType(d.bytes(1)[0])
			k.TunnelID = uint32(d.uvarint())
			k.Tunnel = uint32(d.uvarint())
		}
	}
	if fl&(1<<6) != 0 {
		f.Outer = uint64(int64(f.ID) + d.varint())
		f.Depth = d.bytes(1)[0]
	}
	f.HasSrcMAC, f.HasDstMAC = fl&(1<<4) != 0, fl&(1<<5) != 0
	if fl&recMACMirror != 0 {
		f.SrcMAC, f.DstMAC = p.DstMAC, p.SrcMAC
	} else {
		if f.HasSrcMAC {
			copy(f.SrcMAC[:], d.bytes(6))
		}
		if f.HasDstMAC {
			copy(f.DstMAC[:], d.bytes(6))
		}
	}
	f.Packets = d.uvarint()
	f.Bytes = d.uvarint()
	f.PayloadBytes = d.uvarint()
	f.First = d.prevFirst + d.varint()
	f.Last = f.First + int64(d.uvarint())
	f.TCPFlags = d.bytes(1)[0]
	if fl&recConnMirror != 0 {
		f.State, f.History = p.State, p.History
	} else {
		f.State = flow.State(d.bytes(1)[0])
		if !f.State.Valid() {
			return errCorrupt
		}
		hl := d.uvarint()
		if hl > 23 {
			return errCorrupt
		}
		f.History = flow.MakeHistory(string(d.bytes(int(hl))))
	}
	f.MissingBytes = d.uvarint()
	f.RetransBytes = d.uvarint()
	f.OverlapBytes = d.uvarint()
	if d.err != nil {
		return d.err
	}
	d.prevFirst = f.First
	d.flows[d.pos] = *f
	d.have |= 1 << d.pos
	d.pos++
	d.skipHoles()
	return nil
}
