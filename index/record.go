package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pcapflow/pcapflow/flow"
)

// Flow record encoding, one after another in a block (IDs are implicit:
// the block's first ID plus the position):
//
//	flags u16: bit 0-2 VLAN count, 3 IPv6, 4 src MAC, 5 dst MAC, 6 tunnel
//	proto u8, src, dst (4 or 16 bytes), uvarint sport, dport
//	uvarint VLAN IDs, [uvarint tunnel], uvarint capture, [src MAC], [dst MAC]
//	uvarint peer (0 = none), packets, bytes, payload bytes
//	varint first, uvarint last-first, u8 TCP flags, u8 state code
//	uvarint len(history), history, uvarint missing, retrans, overlap bytes
//
// The Community ID is a function of the key and is recomputed on reading.

var errCorrupt = errors.New("corrupt index record")

// stateCodes lists the Zeek states a record can hold; index 0 is "".
var stateCodes = []string{"", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}

func stateCode(s string) byte {
	for i, c := range stateCodes {
		if c == s {
			return byte(i)
		}
	}
	return byte(len(stateCodes) - 1)
}

func appendFlow(b []byte, f *flow.Flow) []byte {
	k := &f.Key
	fl := uint16(k.NumVLAN)
	if k.IPVersion == 6 {
		fl |= 1 << 3
	}
	if f.HasSrcMAC {
		fl |= 1 << 4
	}
	if f.HasDstMAC {
		fl |= 1 << 5
	}
	if k.Tunnel != 0 {
		fl |= 1 << 6
	}
	b = binary.LittleEndian.AppendUint16(b, fl)
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
	if k.Tunnel != 0 {
		b = binary.AppendUvarint(b, uint64(k.Tunnel))
	}
	b = binary.AppendUvarint(b, uint64(f.Capture))
	if f.HasSrcMAC {
		b = append(b, f.SrcMAC[:]...)
	}
	if f.HasDstMAC {
		b = append(b, f.DstMAC[:]...)
	}
	b = binary.AppendUvarint(b, f.Peer)
	b = binary.AppendUvarint(b, f.Packets)
	b = binary.AppendUvarint(b, f.Bytes)
	b = binary.AppendUvarint(b, f.PayloadBytes)
	b = binary.AppendVarint(b, f.First)
	b = binary.AppendUvarint(b, uint64(f.Last-f.First))
	b = append(b, f.TCPFlags, stateCode(f.State))
	b = binary.AppendUvarint(b, uint64(len(f.History)))
	b = append(b, f.History...)
	b = binary.AppendUvarint(b, f.MissingBytes)
	b = binary.AppendUvarint(b, f.RetransBytes)
	b = binary.AppendUvarint(b, f.OverlapBytes)
	return b
}

// recordDecoder decodes the records of one block.
type recordDecoder struct {
	b   []byte
	err error
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

// next decodes one record into f, whose ID the caller sets.
func (d *recordDecoder) next(f *flow.Flow) error {
	hdr := d.bytes(3)
	fl := binary.LittleEndian.Uint16(hdr)
	*f = flow.Flow{}
	k := &f.Key
	k.Proto = hdr[2]
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
		k.Tunnel = uint32(d.uvarint())
	}
	f.Capture = int(d.uvarint())
	if fl&(1<<4) != 0 {
		f.HasSrcMAC = true
		copy(f.SrcMAC[:], d.bytes(6))
	}
	if fl&(1<<5) != 0 {
		f.HasDstMAC = true
		copy(f.DstMAC[:], d.bytes(6))
	}
	f.Peer = d.uvarint()
	f.Packets = d.uvarint()
	f.Bytes = d.uvarint()
	f.PayloadBytes = d.uvarint()
	first, n := binary.Varint(d.b)
	if n <= 0 {
		return errCorrupt
	}
	d.b = d.b[n:]
	f.First = first
	f.Last = first + int64(d.uvarint())
	fs := d.bytes(2)
	f.TCPFlags = fs[0]
	if int(fs[1]) >= len(stateCodes) {
		return errCorrupt
	}
	f.State = stateCodes[fs[1]]
	hl := d.uvarint()
	if hl > 64 {
		return errCorrupt
	}
	f.History = string(d.bytes(int(hl)))
	f.MissingBytes = d.uvarint()
	f.RetransBytes = d.uvarint()
	f.OverlapBytes = d.uvarint()
	if d.err != nil {
		return d.err
	}
	f.CommunityID = flow.CommunityID(k, 0)
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
