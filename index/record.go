package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Flow records are stored in blocks of up to flowBlock flows with
// consecutive IDs (the key holds the first ID). A block is
//
//	uvarint(capture) record*
//
// and a record is
//
//	uvarint flags: bits 0-2 VLAN count, 3 IPv6, 4 src MAC, 5 dst MAC,
//	        6 tunnel, 7 key mirrors peer, 8 MACs mirror peer,
//	        9 state and history mirror peer, 10 has peer
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
)

// blockEncoder encodes one block of flow records.
type blockEncoder struct {
	b         []byte
	first     uint64
	n         int
	prevFirst int64
	flows     [flowBlock]flow.Flow
}

func (e *blockEncoder) reset(first uint64, capture int) {
	e.b = binary.AppendUvarint(e.b[:0], uint64(capture))
	e.first, e.n, e.prevFirst = first, 0, 0
}

// peerInBlock returns the peer of f when it was encoded earlier in the block.
func peerInBlock(flows []flow.Flow, first uint64, f *flow.Flow, n int) *flow.Flow {
	if f.Peer < first || f.Peer >= f.ID || f.Peer-first >= uint64(n) {
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
	if p := peerInBlock(e.flows[:], e.first, f, e.n); p != nil {
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
	e.flows[e.n] = *f
	e.n++
}

// recordDecoder decodes the records of one block in order.
type recordDecoder struct {
	b         []byte
	err       error
	first     uint64
	capture   int
	n         int
	prevFirst int64
	flows     [flowBlock]flow.Flow
}

// start begins decoding block b whose first flow is first.
func (d *recordDecoder) start(b []byte, first uint64) {
	d.b, d.err, d.first, d.n, d.prevFirst = b, nil, first, 0, 0
	d.capture = int(d.uvarint())
}

// more reports whether records remain.
func (d *recordDecoder) more() bool { return len(d.b) > 0 && d.err == nil }

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
	if d.n >= flowBlock {
		return errCorrupt
	}
	fl := d.uvarint()
	*f = flow.Flow{ID: d.first + uint64(d.n), Capture: d.capture}
	if fl&recHasPeer != 0 {
		f.Peer = uint64(int64(f.ID) + d.varint())
	}
	var p *flow.Flow
	if fl&(recKeyMirror|recMACMirror|recConnMirror) != 0 {
		if p = peerInBlock(d.flows[:], d.first, f, d.n); p == nil {
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
	d.flows[d.n] = *f
	d.n++
	return nil
}

// ID lists: uvarint(count), then the first ID as a delta from the key's
// first ID (always 0) and the other IDs as deltas from the previous one.

func appendIDs(b []byte, first uint64, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	prev := first
	for _, id := range ids {
		b = binary.AppendUvarint(b, id-prev)
		prev = id
	}
	return b
}

func decodeIDs(b []byte, first uint64, out []uint64) ([]uint64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return out, fmt.Errorf("%w: ID list", errCorrupt)
	}
	b = b[k:]
	prev := first
	for i := uint64(0); i < n; i++ {
		d, k := binary.Uvarint(b)
		if k <= 0 {
			return out, fmt.Errorf("%w: ID list", errCorrupt)
		}
		b = b[k:]
		prev += d
		out = append(out, prev)
	}
	return out, nil
}
