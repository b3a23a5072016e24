package index

import (
	"encoding/binary"
	"errors"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Flow records are stored in blocks of the flowBlock consecutive IDs
// from a multiple of flowBlock (plus one) on; the key holds the first ID.
// A block is
//
//	uvarint(holes) varint(base time) uvarint(base capture) entry*
//
// Bit i of holes marks ID first+i as stored alone (under an L or N key:
// the flow outlived its block, see writer.go); the entries are those of
// the other IDs in order, as many as the block holds. The base time and
// capture are those of the block's first flow: entries are written
// relative to them, so that each entry can be encoded on its own when
// its flow ends and a block is the concatenation of its entries. In a
// provisional block (G) each entry is preceded by uvarint(its length).
// A flow stored alone is a block of one entry whose bases are its own.
//
// An entry is
//
//	flags (one byte; uvarint in general)
//	  0x01 peer    0x02 mirror  0x04 IPv6   0x08 both MACs
//	  0x10 TCP     0x20 sequence counters   0x40 extended flags follow
//	[uvarint ext]  0x07 VLAN count, 0x08 tunnel, 0x10 source MAC only,
//	               0x20 destination MAC only, 0x40 capture differs from
//	               the base, 0x80 key reversed from the peer only
//	[varint(capture - base capture)]
//	[varint(peer - ID)]
//	key, unless mirrored: u8 protocol, source, destination (4 or 16
//	     bytes), uvarint ports, uvarint VLAN IDs, and in a tunnel u8
//	     type, uvarint ID, uvarint endpoints
//	[varint(outer - ID), u8 depth]                         in a tunnel
//	[source MAC] [destination MAC]                         unless mirrored
//	uvarint packets, bytes, payload bytes
//	varint(first - base time), uvarint(last - first)
//	TCP: u8 flags, and unless mirrored a state and history: u8 code of a
//	     common pair (historyTable), or 0xff, u8 state, uvarint length,
//	     letters
//	[uvarint missing, retrans, overlap bytes]
//
// "Mirror" means the peer is earlier in the same block and this flow's
// key is its reverse, its MACs its peer's swapped and its state and
// history the same: the second direction of a conversation costs a few
// bytes. The Community ID is a function of the key and is recomputed on
// reading.

var errCorrupt = errors.New("corrupt index record")

const (
	recPeer   = 0x01
	recMirror = 0x02
	recIPv6   = 0x04
	recMACs   = 0x08
	recTCP    = 0x10
	recSeq    = 0x20
	recExt    = 0x40

	extVLAN    = 0x07
	extTunnel  = 0x08
	extSrcMAC  = 0x10
	extDstMAC  = 0x20
	extCapture = 0x40
	extKeyRev  = 0x80
)

// historyTable lists the (state, history) pairs common enough to cost
// one byte: Zeek's usual ones and those of the corpus and the real
// benchmark capture (99.8% of its TCP flows are the first). Its order is
// part of the format.
var historyTable = [...]struct {
	state   flow.State
	history string
}{
	{flow.StateSF, "ShADadfF"}, {flow.StateSF, "ShADadFf"}, {flow.StateSF, "ShAFf"}, {flow.StateSF, "ShAFaf"},
	{flow.StateSF, "ShADadWFf"}, {flow.StateSF, "ShADdFf"}, {flow.StateSF, "ShAdDaFf"}, {flow.StateSF, "ShAdfFa"},
	{flow.StateSF, "ShADdfF"}, {flow.StateSF, "ShAaDdfF"}, {flow.StateSF, "ShADafF"}, {flow.StateSF, "ShAdDafF"},
	{flow.StateSF, "ShDAadfF"}, {flow.StateSF, "ShADFadf"}, {flow.StateSF, "ShADadFRf"}, {flow.StateSF, "ShAdDaFRf"},
	{flow.StateS0, "S"}, {flow.StateS0, ""}, {flow.StateREJ, "Sr"}, {flow.StateREJ, "Sr^"},
	{flow.StateS1, "ShA"}, {flow.StateS1, "ShADa"}, {flow.StateS1, "ShADad"}, {flow.StateS1, "ShAa"},
	{flow.StateS1, "ShAD"}, {flow.StateS1, "ShAaD"}, {flow.StateS1, "ShADadW"}, {flow.StateS1, "Sh"},
	{flow.StateS2, "ShADF"}, {flow.StateS2, "ShADadF"}, {flow.StateS3, "ShADadf"}, {flow.StateS3, "ShADaf"},
	{flow.StateRSTO, "ShR"}, {flow.StateRSTO, "ShaR"}, {flow.StateRSTO, "ShADadR"}, {flow.StateRSTO, "ShAdDR"},
	{flow.StateRSTO, "ShADR"}, {flow.StateRSTO, "ShADaR"}, {flow.StateRSTO, "ShADadRf"}, {flow.StateRSTO, "ShADadFR"},
	{flow.StateRSTR, "ShADadr"}, {flow.StateRSTR, "ShADadFr"}, {flow.StateRSTR, "Shr"}, {flow.StateRSTR, "ShADr"},
	{flow.StateRSTOS0, "SR"}, {flow.StateRSTRH, "Hr"}, {flow.StateSH, "SF"}, {flow.StateSH, "F"},
	{flow.StateSHR, "Hf"}, {flow.StateOTH, ""}, {flow.StateOTH, "D"}, {flow.StateOTH, "Sh"},
	{flow.StateOTH, "SAD"}, {flow.StateOTH, "SADW"}, {flow.StateOTH, "DadA"}, {flow.StateOTH, "^h"},
	{flow.StateOTH, "SA"}, {flow.StateOTH, "DdA"}, {flow.StateOTH, "H"}, {flow.StateOTH, "A"},
}

// historyCode maps a (state, history) pair to its historyTable index.
var historyCode = func() map[historyKey]uint8 {
	m := make(map[historyKey]uint8, len(historyTable))
	for i, e := range historyTable {
		m[historyKey{e.state, flow.MakeHistory(e.history)}] = uint8(i)
	}
	return m
}()

type historyKey struct {
	state   flow.State
	history flow.History
}

// blockBase is what a block's entries are written relative to.
type blockBase struct {
	time    int64
	capture int
}

// mirrors reports whether f may be written as the mirror of p.
func mirrors(f, p *flow.Flow) bool {
	return p.Key.Reverse() == f.Key && f.HasSrcMAC == p.HasDstMAC && f.HasDstMAC == p.HasSrcMAC &&
		f.SrcMAC == p.DstMAC && f.DstMAC == p.SrcMAC && f.State == p.State && f.History == p.History
}

// appendEntry encodes f relative to base. peer, when not nil, is f's peer
// written earlier in the same block: f may then be its mirror.
func appendEntry(b []byte, f *flow.Flow, base blockBase, peer *flow.Flow) []byte {
	k := &f.Key
	var fl, ext uint64
	if f.Peer != 0 {
		fl |= recPeer
	}
	mirror := peer != nil && mirrors(f, peer)
	keyRev := !mirror && peer != nil && peer.Key.Reverse() == *k
	if mirror {
		fl |= recMirror
	}
	if k.IPVersion == 6 {
		fl |= recIPv6
	}
	switch {
	case f.HasSrcMAC && f.HasDstMAC:
		fl |= recMACs
	case f.HasSrcMAC:
		ext |= extSrcMAC
	case f.HasDstMAC:
		ext |= extDstMAC
	}
	tcp := k.Proto == pcapio.ProtoTCP
	if tcp {
		fl |= recTCP
		if f.MissingBytes|f.RetransBytes|f.OverlapBytes != 0 {
			fl |= recSeq
		}
	}
	ext |= uint64(k.NumVLAN)
	if k.TunnelType != 0 {
		ext |= extTunnel
	}
	if f.Capture != base.capture {
		ext |= extCapture
	}
	if keyRev {
		ext |= extKeyRev
	}
	if ext != 0 {
		fl |= recExt
	}
	b = binary.AppendUvarint(b, fl)
	if ext != 0 {
		b = binary.AppendUvarint(b, ext)
	}
	if ext&extCapture != 0 {
		b = binary.AppendVarint(b, int64(f.Capture-base.capture))
	}
	if f.Peer != 0 {
		b = binary.AppendVarint(b, int64(f.Peer-f.ID))
	}
	if !mirror && !keyRev {
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
	if !mirror {
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
	b = binary.AppendVarint(b, f.First-base.time)
	b = binary.AppendUvarint(b, uint64(f.Last-f.First))
	if tcp {
		b = append(b, f.TCPFlags)
		if !mirror {
			if c, ok := historyCode[historyKey{f.State, f.History}]; ok {
				b = append(b, c)
			} else {
				b = append(b, 0xff, byte(f.State))
				b = binary.AppendUvarint(b, uint64(f.History.Len()))
				b = f.History.Append(b)
			}
		}
		if fl&recSeq != 0 {
			b = binary.AppendUvarint(b, f.MissingBytes)
			b = binary.AppendUvarint(b, f.RetransBytes)
			b = binary.AppendUvarint(b, f.OverlapBytes)
		}
	}
	return b
}

// appendBlockHeader starts a block value.
func appendBlockHeader(b []byte, holes uint64, base blockBase) []byte {
	b = binary.AppendUvarint(b, holes)
	b = binary.AppendVarint(b, base.time)
	return binary.AppendUvarint(b, uint64(base.capture))
}

// standaloneRecord encodes a flow as a block of its own.
func standaloneRecord(b []byte, f *flow.Flow) []byte {
	base := blockBase{f.First, f.Capture}
	return appendEntry(appendBlockHeader(b, 0, base), f, base, nil)
}

// recordDecoder decodes the records of one block in order.
type recordDecoder struct {
	b     []byte
	err   error
	first uint64
	pos   uint64 // ID - first of the next record
	holes uint64
	have  uint64
	base  blockBase
	sized bool   // entries are length-prefixed (provisional blocks)
	cur   []byte // the last entry's bytes, in a sized block
	flows [flowBlock]flow.Flow
}

// start begins decoding block b whose first flow is first; sized says
// that entries carry their lengths.
func (d *recordDecoder) start(b []byte, first uint64, sized bool) {
	d.b, d.err, d.first, d.pos, d.have, d.sized = b, nil, first, 0, 0, sized
	d.holes = d.uvarint()
	d.base.time = d.varint()
	d.base.capture = int(d.uvarint())
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

func (d *recordDecoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// next decodes the next record into f; with sized blocks, raw is set to
// the entry's bytes.
func (d *recordDecoder) next(f *flow.Flow) error {
	if d.pos >= flowBlock {
		return errCorrupt
	}
	if d.sized {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			d.fail()
			return d.err
		}
		d.cur = d.b[:n]
	}
	start := len(d.b)
	d.decodeEntry(f)
	if d.err != nil {
		return d.err
	}
	if d.sized && start-len(d.b) != len(d.cur) {
		return errCorrupt
	}
	d.flows[d.pos] = *f
	d.have |= 1 << d.pos
	d.pos++
	d.skipHoles()
	return nil
}

func (d *recordDecoder) decodeEntry(f *flow.Flow) {
	fl := d.uvarint()
	var ext uint64
	if fl&recExt != 0 {
		ext = d.uvarint()
	}
	*f = flow.Flow{ID: d.first + d.pos, Capture: d.base.capture}
	if ext&extCapture != 0 {
		f.Capture += int(d.varint())
		if f.Capture < 0 {
			d.fail()
			return
		}
	}
	if fl&recPeer != 0 {
		f.Peer = uint64(int64(f.ID) + d.varint())
	}
	var p *flow.Flow
	if fl&recMirror != 0 || ext&extKeyRev != 0 {
		if f.Peer < d.first || f.Peer >= f.ID || d.have&(1<<(f.Peer-d.first)) == 0 {
			d.fail()
			return
		}
		p = &d.flows[f.Peer-d.first]
	}
	k := &f.Key
	if p != nil {
		*k = p.Key.Reverse()
	} else {
		k.Proto = d.bytes(1)[0]
		k.IPVersion = 4
		alen := 4
		if fl&recIPv6 != 0 {
			k.IPVersion, alen = 6, 16
		}
		copy(k.Src[:], d.bytes(alen))
		copy(k.Dst[:], d.bytes(alen))
		k.SrcPort = uint16(d.uvarint())
		k.DstPort = uint16(d.uvarint())
		k.NumVLAN = uint8(ext & extVLAN)
		if k.NumVLAN > flow.MaxVLAN {
			d.fail()
			return
		}
		for i := 0; i < int(k.NumVLAN); i++ {
			k.VLAN[i] = uint16(d.uvarint())
		}
		if ext&extTunnel != 0 {
			k.TunnelType = pcapio.TunnelType(d.bytes(1)[0])
			k.TunnelID = uint32(d.uvarint())
			k.Tunnel = uint32(d.uvarint())
		}
	}
	if ext&extTunnel != 0 {
		f.Outer = uint64(int64(f.ID) + d.varint())
		f.Depth = d.bytes(1)[0]
	}
	if fl&recMirror != 0 {
		f.HasSrcMAC, f.HasDstMAC = p.HasDstMAC, p.HasSrcMAC
		f.SrcMAC, f.DstMAC = p.DstMAC, p.SrcMAC
	} else {
		f.HasSrcMAC = fl&recMACs != 0 || ext&extSrcMAC != 0
		f.HasDstMAC = fl&recMACs != 0 || ext&extDstMAC != 0
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
	f.First = d.base.time + d.varint()
	f.Last = f.First + int64(d.uvarint())
	if fl&recTCP != 0 {
		f.TCPFlags = d.bytes(1)[0]
		if fl&recMirror != 0 {
			f.State, f.History = p.State, p.History
		} else if c := d.bytes(1)[0]; c != 0xff {
			if int(c) >= len(historyTable) {
				d.fail()
				return
			}
			f.State, f.History = historyTable[c].state, flow.MakeHistory(historyTable[c].history)
		} else {
			f.State = flow.State(d.bytes(1)[0])
			if !f.State.Valid() {
				d.fail()
				return
			}
			hl := d.uvarint()
			if hl > 23 {
				d.fail()
				return
			}
			f.History = flow.MakeHistory(string(d.bytes(int(hl))))
		}
		if fl&recSeq != 0 {
			f.MissingBytes = d.uvarint()
			f.RetransBytes = d.uvarint()
			f.OverlapBytes = d.uvarint()
		}
	}
}
