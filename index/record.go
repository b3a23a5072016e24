package index

import (
	"encoding/binary"
	"errors"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/varint"
	"github.com/pcapflow/pcapflow/pcapio"
)

// While a block of flow IDs has live flows, the records of those that
// ended wait in memory (pendingBlock), each encoded once as an entry,
// when its connection ends, relative to the block's base time and
// capture; the block is written (recblock.go) once complete. An entry is
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
	return f.Key.IsReverseOf(&p.Key) && f.HasSrcMAC == p.HasDstMAC && f.HasDstMAC == p.HasSrcMAC &&
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
	keyRev := !mirror && peer != nil && k.IsReverseOf(&peer.Key)
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
		b = appendKeyContext(b, k)
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

// entryDecoder decodes the entries of a pending block, in ID order.
type entryDecoder struct {
	varint.Reader
	first uint64
	pos   uint64 // ID - first of the entry
	have  uint64
	base  blockBase
	flows [flowBlock]flow.Flow
}

// decode decodes the entry b of flow id into the decoder's own record
// of it, valid until the decoder starts another block; entries of lower
// IDs of the block must have been decoded before (a mirror refers to its
// peer). (Decoded elsewhere and copied in, each record was 248 bytes
// written twice.)
func (d *entryDecoder) decode(b []byte, id uint64) (*flow.Flow, error) {
	d.Reader, d.pos = varint.Reader{B: b}, id-d.first
	f := &d.flows[d.pos]
	d.decodeEntry(f)
	if d.Bad || len(d.B) != 0 {
		return nil, errCorrupt
	}
	d.have |= 1 << d.pos
	return f, nil
}

func (d *entryDecoder) fail()              { d.Fail() }
func (d *entryDecoder) uvarint() uint64    { return d.Uvarint() }
func (d *entryDecoder) varint() int64      { return d.Varint() }
func (d *entryDecoder) bytes(n int) []byte { return d.Bytes(n) }

func (d *entryDecoder) decodeEntry(f *flow.Flow) {
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
		k.SetReverse(&p.Key)
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

// appendKeyContext encodes what a key has beyond its 5-tuple, in records
// and record blocks alike:
//
//	uvarint VLAN*                     (the count is in the flags)
//	u8 tunnel type, uvarint tunnel ID, uvarint tunnel slot   if in a tunnel
func appendKeyContext(b []byte, k *flow.Key) []byte {
	for _, v := range k.VLANs() {
		b = binary.AppendUvarint(b, uint64(v))
	}
	if k.TunnelType != 0 {
		b = append(b, byte(k.TunnelType))
		b = binary.AppendUvarint(b, uint64(k.TunnelID))
		b = binary.AppendUvarint(b, uint64(k.Tunnel))
	}
	return b
}
