package index

import (
	"bytes"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
)

// FuzzRecords feeds arbitrary bytes to every decoder of stored values:
// flow record blocks (final and provisional), posting chunks and tails,
// groups of flows stored late or live, ID lists, address blocks and keys. A corrupt index
// must give errors, never panics or runaway allocation.
func FuzzRecords(f *testing.F) {
	fl := flow.Flow{ID: 1, Peer: 2, Packets: 3, Bytes: 300, First: 1e18, Last: 1e18 + 5e6}
	fl.Key.IPVersion, fl.Key.Proto = 4, 6
	fl.State, fl.History = flow.StateSF, flow.MakeHistory("ShADadfF")
	fl2 := fl
	fl2.ID, fl2.Peer, fl2.Key, fl2.Capture = 2, 1, fl.Key.Reverse(), 2
	f.Add(appendRecordBlock(nil, 1, []*flow.Flow{&fl, &fl2}))
	base := blockBase{fl.First, 0}
	f.Add(appendEntry(nil, &fl, base, nil))
	var p postingBuf
	var pool bufPool
	p.add(PacketRef{0, 100}, &pool)
	p.add(PacketRef{0, 101}, &pool)
	p.add(PacketRef{0, 90}, &pool)
	p.add(PacketRef{2, 7}, &pool)
	f.Add(p.view(&pool).appendChunk(nil, PacketRef{}))
	refs := []PacketRef{{0, 100}, {0, 101}, {0, 90}, {2, 7}, {2, 5000}}
	f.Add(appendChunkBits(nil, refs))
	// The tails' records: a flow of a full chunk and 5 more, and one of 2.
	var trb recordBlock
	trb.present = 3
	trb.flows[0], trb.flows[1] = fl, fl2
	trb.flows[0].Packets, trb.flows[1].Packets = chunkMax+5, 2
	tb, err := appendTailBlock(nil, PacketRef{0, 80}, []*flow.Flow{&trb.flows[0], &trb.flows[1]}, []tailOf{{1, refs}, {0, refs[:2]}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tb)
	var st storeSink
	// A group of flows stored late: a conversation and a flow whose peer
	// is outside the group.
	late := []heldLate{{f: fl, start: 0, end: 3}, {f: fl2, start: 3, end: 5}, {f: fl, start: 5, end: 5}}
	late[0].f.ID, late[0].f.Peer, late[0].f.Packets = 4100, 4101, 3
	late[1].f.ID, late[1].f.Peer, late[1].f.Packets = 4101, 4100, 2
	late[2].f.ID, late[2].f.Peer, late[2].f.Packets = 4200, 9, 0
	lb, err := st.appendLate(nil, 4097, late, refs)
	if err != nil {
		f.Fatal(err)
	}
	var lrb recordBlock
	var ltb tailBlock
	if ids, ok, err := decodeLate(lb, 4097, 4101, nil, &lrb, &ltb); err != nil || !ok || len(ids) != 3 ||
		lrb.flows[1].ID != 4101 || lrb.flows[1].Peer != 4100 || lrb.flows[2].Peer != 9 || len(ltb.tails[0].refs) != 3 {
		f.Fatalf("the group decodes as %v %v %v: %+v", ids, ok, err, lrb.flows[:3])
	}
	f.Add(lb)
	f.Add(appendIDs(nil, 5, []uint64{5, 7, 100}))
	f.Add(appendIDs(nil, 5, []uint64{5, 3000, 7000, 9000, 12000, 20000, 21000}))
	f.Add(appendIDs(nil, 5, append(seq(5, 300), seq(302, 600)...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rb recordBlock
		decodeRecordBlock(b, 1, &rb)
		var d entryDecoder
		d.first = 1
		d.decode(b, 1)
		var tb tailBlock
		decodeTailBlock(b, &trb, &tb, nil)
		if refs, err := decodeChunkBits(b, nil); err == nil && len(refs) > 8*len(b) {
			t.Fatalf("%d refs from %d bytes", len(refs), len(b))
		}
		if refs, err := decodeChunk(b, PacketRef{}, nil); err == nil && len(refs) > len(b) {
			t.Fatalf("%d refs from %d bytes", len(refs), len(b))
		}
		if ids, err := decodeIDs(b, 0, nil); err == nil && len(ids) > max(8*len(b), maxListIDs) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
		if ids, _, err := decodeLate(b, 1, 0, nil, &rb, &tb); err == nil && len(ids) > len(b) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
		splitTail(b)
		decodeListKey(b, 2)
		decodeAddrKey(b)
		FormatKey(b)
		lo, hi := []byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}
		decodeAddrBlock(b, 4, lo, hi, nil)
		decodeAddrBlock(b, 16, make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), nil)
	})
}
