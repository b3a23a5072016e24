package index

import (
	"bytes"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
)

// FuzzRecords feeds arbitrary bytes to every decoder of stored values:
// flow record blocks, posting chunks, ID lists and address blocks. A
// corrupt index must give errors, never panics or runaway allocation.
func FuzzRecords(f *testing.F) {
	var e blockEncoder
	e.reset(1)
	fl := flow.Flow{ID: 1, Peer: 2, Packets: 3, Bytes: 300}
	fl.Key.IPVersion, fl.Key.Proto = 4, 6
	e.add(&fl)
	fl2 := fl
	fl2.ID, fl2.Peer, fl2.Key, fl2.Capture = 3, 1, fl.Key.Reverse(), 2
	e.add(&fl2)
	f.Add(e.bytes(nil))
	var p postingBuf
	var pool bufPool
	p.add(PacketRef{0, 100}, &pool)
	p.add(PacketRef{0, 101}, &pool)
	p.add(PacketRef{0, 90}, &pool)
	p.add(PacketRef{2, 7}, &pool)
	f.Add(p.appendChunk(nil))
	var st storeSink
	f.Add(st.standalone(nil, &fl, 2, p.appendChunk(nil)))
	f.Add(appendIDs(nil, 5, []uint64{5, 7, 100}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d recordDecoder
		var out flow.Flow
		d.start(b, 1)
		for i := 0; d.more() && i < 100; i++ {
			if d.next(&out) != nil {
				break
			}
		}
		if refs, err := decodeChunk(b, nil); err == nil && len(refs) > len(b) {
			t.Fatalf("%d refs from %d bytes", len(refs), len(b))
		}
		if ids, err := decodeIDs(b, 0, nil); err == nil && len(ids) > len(b) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
		splitStandalone(b)
		splitTail(b)
		decodeListKey(b, 2)
		decodeAddrKey(b)
		FormatKey(b)
		lo, hi := []byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}
		decodeAddrBlock(b, 4, lo, hi, nil)
		decodeAddrBlock(b, 16, make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), nil)
	})
}
