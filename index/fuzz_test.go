package index

import (
	"bytes"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
)

// FuzzRecords feeds arbitrary bytes to every decoder of stored values:
// flow record blocks (final and provisional), posting chunks and tails,
// flows stored alone, ID lists, address blocks and keys. A corrupt index
// must give errors, never panics or runaway allocation.
func FuzzRecords(f *testing.F) {
	fl := flow.Flow{ID: 1, Peer: 2, Packets: 3, Bytes: 300, First: 1e18, Last: 1e18 + 5e6}
	fl.Key.IPVersion, fl.Key.Proto = 4, 6
	fl.State, fl.History = flow.StateSF, flow.MakeHistory("ShADadfF")
	fl2 := fl
	fl2.ID, fl2.Peer, fl2.Key, fl2.Capture = 2, 1, fl.Key.Reverse(), 2
	base := blockBase{fl.First, 0}
	b := appendBlockHeader(nil, 0, base)
	b = appendEntry(b, &fl, base, nil)
	b = appendEntry(b, &fl2, base, &fl)
	f.Add(b)
	var p postingBuf
	var pool bufPool
	p.add(PacketRef{0, 100}, &pool)
	p.add(PacketRef{0, 101}, &pool)
	p.add(PacketRef{0, 90}, &pool)
	p.add(PacketRef{2, 7}, &pool)
	f.Add(p.appendChunk(nil, PacketRef{}))
	f.Add(append(appendTailsHeader(nil, 0, PacketRef{0, 80}), appendTail(nil, 1, p.appendChunk(nil, PacketRef{0, 80}))...))
	var st storeSink
	f.Add(st.standalone(&fl, 2, &p))
	f.Add(appendIDs(nil, 5, []uint64{5, 7, 100}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out flow.Flow
		for _, sized := range []bool{false, true} {
			var d recordDecoder
			d.start(b, 1, sized)
			for i := 0; d.more() && i < 100; i++ {
				if d.next(&out) != nil {
					break
				}
			}
		}
		if refs, err := decodeChunk(b, PacketRef{}, nil); err == nil && len(refs) > len(b) {
			t.Fatalf("%d refs from %d bytes", len(refs), len(b))
		}
		if ids, err := decodeIDs(b, 0, nil); err == nil && len(ids) > len(b) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
		splitStandalone(b)
		splitTail(b)
		if _, base, rest, err := readTailsHeader(b); err == nil {
			if _, tail, _, err := splitTail(rest); err == nil {
				decodeChunk(tail, base, nil)
			}
		}
		decodeListKey(b, 2)
		decodeAddrKey(b)
		FormatKey(b)
		lo, hi := []byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}
		decodeAddrBlock(b, 4, lo, hi, nil)
		decodeAddrBlock(b, 16, make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), nil)
	})
}
