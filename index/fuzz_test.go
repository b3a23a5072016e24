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
	e.reset(1, 0)
	fl := flow.Flow{ID: 1, Peer: 2, Packets: 3, Bytes: 300}
	fl.Key.IPVersion, fl.Key.Proto = 4, 6
	e.add(&fl)
	f.Add(e.b)
	var p postingBuf
	var sl slab
	p.add(100, 60, &sl)
	p.add(200, 1514, &sl)
	f.Add(p.chunkCopy(nil))
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
		lo, hi := []byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}
		decodeAddrBlock(b, 4, lo, hi, nil)
		decodeAddrBlock(b, 16, make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), nil)
	})
}
