package index

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// randomFlows makes a block's worth of flows with every feature the
// record format has a case for: peers in and out of the block, mirrors
// and reversed keys with other MACs or states, IPv6, VLANs, tunnels,
// flows of other captures, times before the block's base, odd counters.
func randomFlows(r *rand.Rand, first uint64) []*flow.Flow {
	var out []*flow.Flow
	lastPort := map[[3]byte]uint16{}
	for i := uint64(0); i < flowBlock; i++ {
		if r.IntN(6) == 0 {
			continue // a hole
		}
		f := &flow.Flow{ID: first + i, Capture: r.IntN(3), Packets: uint64(r.IntN(100) + 1)}
		k := &f.Key
		k.IPVersion = 4
		if r.IntN(3) == 0 {
			k.IPVersion = 6
			k.Src[0], k.Dst[0] = 0x20, 0x20
		}
		k.Src[3], k.Dst[3] = byte(r.IntN(4)), byte(r.IntN(4))
		k.Proto = []uint8{pcapio.ProtoTCP, pcapio.ProtoUDP, pcapio.ProtoICMP, 47}[r.IntN(4)]
		k.SrcPort, k.DstPort = uint16(r.IntN(65536)), []uint16{80, 443, uint16(r.IntN(65536))}[r.IntN(3)]
		// A client's next port to the same server: a step from its last
		// (bSportNear), in range or just out of it, or past 0 or 65535.
		pair := [3]byte{k.IPVersion, k.Src[3], k.Dst[3]}
		if p, ok := lastPort[pair]; ok && r.IntN(2) == 0 {
			k.SrcPort = uint16(int(p) + []int{2, 1, -1, 63, -64, 64, -65, 7}[r.IntN(8)])
		}
		lastPort[pair] = k.SrcPort
		if r.IntN(5) == 0 {
			k.NumVLAN = uint8(r.IntN(4) + 1)
			for j := 0; j < int(k.NumVLAN); j++ {
				k.VLAN[j] = uint16(r.IntN(4096))
			}
		}
		if r.IntN(6) == 0 {
			k.TunnelType, k.TunnelID, k.Tunnel = pcapio.TunnelVXLAN, uint32(r.IntN(1<<24)), uint32(r.IntN(9))
			f.Outer, f.Depth = uint64(r.IntN(int(first+i))+1), uint8(r.IntN(3)+1)
		}
		f.HasSrcMAC, f.HasDstMAC = r.IntN(5) > 0, r.IntN(5) > 0
		if f.HasSrcMAC { // (a MAC not seen is zero)
			f.SrcMAC[5] = byte(r.IntN(3))
		}
		if f.HasDstMAC {
			f.DstMAC[5] = byte(r.IntN(3))
		}
		f.Bytes = f.Packets * uint64(60+r.IntN(1500))
		f.PayloadBytes = uint64(r.IntN(int(f.Bytes)))
		if r.IntN(4) == 0 {
			f.PayloadBytes = 0
		}
		f.First = 1e18 + int64(r.IntN(1e9))*1000
		f.Last = f.First + int64(r.IntN(1e6))*1000
		if r.IntN(7) == 0 {
			f.Last = f.First + int64(r.IntN(1e6)) // not on the microsecond grid
		}
		if k.Proto == pcapio.ProtoTCP {
			f.TCPFlags = uint8(r.IntN(256))
			e := historyTable[r.IntN(len(historyTable))]
			f.State, f.History = e.state, flow.MakeHistory(e.history)
			if r.IntN(5) == 0 {
				f.State, f.History = flow.StateOTH, flow.MakeHistory("ShAdDaFfRrWw^")
			}
			if r.IntN(4) == 0 {
				f.MissingBytes, f.RetransBytes, f.OverlapBytes = uint64(r.IntN(1e6)), uint64(r.IntN(1e4)), uint64(r.IntN(10))
			}
		}
		out = append(out, f)
	}
	// Peers: mostly the reverse of an earlier flow of the block.
	for j := 1; j < len(out); j++ {
		f := out[j]
		switch r.IntN(5) {
		case 0, 1, 2:
			p := out[r.IntN(j)]
			if p.Peer != 0 {
				continue
			}
			f.Peer, p.Peer = p.ID, f.ID
			f.Key = p.Key.Reverse()
			f.Outer, f.Depth = p.Outer, p.Depth
			if r.IntN(3) > 0 {
				f.HasSrcMAC, f.HasDstMAC, f.SrcMAC, f.DstMAC = p.HasDstMAC, p.HasSrcMAC, p.DstMAC, p.SrcMAC
				f.State, f.History = p.State, p.History
			}
			if f.Key.Proto != pcapio.ProtoTCP {
				f.State, f.History, f.TCPFlags, f.MissingBytes, f.RetransBytes, f.OverlapBytes = 0, flow.History{}, 0, 0, 0, 0
			}
		case 3:
			f.Peer = first + flowBlock + uint64(r.IntN(100)) // outside the block
		}
	}
	return out
}

// TestBlockScratchReuse encodes blocks one after the other in one
// scratch, as the store sink does: each must be the bytes a fresh
// scratch gives, whatever the blocks before it left in the columns and
// dictionaries (an empty block and blocks of one flow included).
func TestBlockScratchReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	var sc blockScratch
	for trial := 0; trial < 300; trial++ {
		first := uint64(trial)*flowBlock + 1
		flows := randomFlows(r, first)
		switch trial % 7 {
		case 3:
			flows = nil
		case 5:
			flows = flows[:min(1, len(flows))]
		}
		got := sc.appendRecordBlock([]byte{0xee}, first, flows)
		want := append([]byte{0xee}, new(blockScratch).appendRecordBlock(nil, first, flows)...)
		if string(got) != string(want) {
			t.Fatalf("trial %d: %d bytes in a used scratch, %d in a fresh one", trial, len(got), len(want))
		}
	}
}

func TestRecordBlockRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := 0; trial < 500; trial++ {
		first := uint64(trial)*flowBlock + 1
		flows := randomFlows(r, first)
		b := appendRecordBlock(nil, first, flows)
		var rb recordBlock
		if err := decodeRecordBlock(b, first, &rb); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		var present uint64
		for _, f := range flows {
			present |= 1 << (f.ID - first)
			if got := rb.flows[f.ID-first]; !reflect.DeepEqual(got, *f) {
				t.Fatalf("trial %d flow %d:\n got  %+v\n want %+v", trial, f.ID, got, *f)
			}
		}
		if rb.present != present {
			t.Fatalf("trial %d: present %x, want %x", trial, rb.present, present)
		}
	}
}

func TestTailBlockRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for trial := 0; trial < 500; trial++ {
		base := PacketRef{int32(r.IntN(3)), int64(r.IntN(1e6))}
		var present uint64
		var tails []tailOf
		for i := 0; i < flowBlock; i++ {
			if r.IntN(5) == 0 {
				continue
			}
			present |= 1 << i
			tl := tailOf{chunks: uint32(r.IntN(3) * r.IntN(3))}
			cur := PacketRef{base.Capture + int32(r.IntN(2)), base.Index + int64(r.IntN(2000)) - 100}
			cur.Index = max(cur.Index, 0)
			for n := r.IntN(40); n > 0; n-- {
				tl.refs = append(tl.refs, cur)
				switch r.IntN(30) {
				case 0:
					cur.Capture = int32(r.IntN(4))
					cur.Index = int64(r.IntN(1e7))
				case 1:
					cur.Index -= int64(r.IntN(int(cur.Index) + 1))
				case 2:
					cur.Index += int64(r.IntN(1e9))
				default:
					cur.Index += int64(r.IntN(300)) + 1
				}
			}
			tails = append(tails, tl)
		}
		// The records the tails belong to: only their packet counts count.
		var rb recordBlock
		var flows []*flow.Flow
		rb.present = present
		for i, j := 0, 0; i < flowBlock; i++ {
			if present&(1<<i) != 0 {
				f := &rb.flows[i]
				f.ID, f.Packets = uint64(i+1), uint64(tails[j].chunks)*chunkMax+uint64(len(tails[j].refs))
				flows = append(flows, f)
				j++
			}
		}
		b, err := appendTailBlock(nil, base, flows, tails)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		var tb tailBlock
		if _, err := decodeTailBlock(b, &rb, &tb, nil); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		j := 0
		for i := 0; i < flowBlock; i++ {
			if present&(1<<i) == 0 {
				continue
			}
			got, want := tb.tails[i], tails[j]
			j++
			if got.chunks != want.chunks || len(got.refs) != len(want.refs) || (len(want.refs) > 0 && !reflect.DeepEqual(got.refs, want.refs)) {
				t.Fatalf("trial %d flow %d: got %+v, want %+v", trial, i, got, want)
			}
		}
		cb := appendChunkBits(nil, tails[0].refs)
		got, err := decodeChunkBits(cb, nil)
		if err != nil || len(got) != len(tails[0].refs) || (len(got) > 0 && !reflect.DeepEqual(got, tails[0].refs)) {
			t.Fatalf("trial %d chunk: %v %v", trial, got, err)
		}
	}
}

// Blocks seal the close timeout (bounded by the idle timeout) plus
// sealLife after they begin, so that a longer close timeout does not
// store most flows alone.
func TestSealAfterFollowsTimeouts(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want time.Duration
	}{
		{Settings{}, 5*time.Second + sealLife},
		{Settings{CloseTimeout: time.Minute}, time.Minute + sealLife},
		{Settings{CloseTimeout: 10 * time.Second}, 10*time.Second + sealLife},
		{Settings{IdleTimeout: 2 * time.Second}, 2*time.Second + sealLife},
		{Settings{IdleTimeout: -1}, 5*time.Second + sealLife}, // no timeouts: blocks seal as with the defaults
	} {
		if got := time.Duration(tc.s.sealAfter()); got != tc.want {
			t.Errorf("%+v: seal after %v, want %v", tc.s, got, tc.want)
		}
	}
}

// A client's successive connections to one server take ports a few apart:
// each after the first is stored as a step of a byte (bSportNear), even
// with other clients' connections between them, and a step out of range
// as the port itself.
func TestSourcePortSteps(t *testing.T) {
	block := func(steps []int) []*flow.Flow {
		var out []*flow.Flow
		port := 40000
		for i, s := range steps {
			port += s
			f := &flow.Flow{ID: uint64(2*i + 1), Packets: 1, Bytes: 60, First: 1e18 + int64(i)*1000, Last: 1e18 + int64(i)*1000}
			f.Key.IPVersion, f.Key.Proto = 4, pcapio.ProtoUDP
			f.Key.Src, f.Key.Dst = [16]byte{10, 0, 0, 1}, [16]byte{10, 0, 0, 2}
			f.Key.SrcPort, f.Key.DstPort = uint16(port), 53
			other := &flow.Flow{ID: uint64(2*i + 2), Packets: 1, Bytes: 60, First: f.First + 1, Last: f.First + 1}
			other.Key = f.Key
			other.Key.Src[3], other.Key.SrcPort = byte(i+3), uint16(7*i*i+1000)
			out = append(out, f, other)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		steps []int
		saved int // bytes the steps save at least, against ports 200 apart
	}{
		// 31 steps of a byte instead of two, less a flag word more.
		{"sequential", []int{0, 2, 2, 4, 2, 6, 2, 2, 10, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, 20},
		{"edges", []int{0, 63, 63, -64, 63, -1, 63, -64}, 0},
		{"out of range", []int{0, 64, -65, 300, -200}, 0},
	} {
		flows := block(tc.steps)
		b := appendRecordBlock(nil, 1, flows)
		var rb recordBlock
		if err := decodeRecordBlock(b, 1, &rb); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, f := range flows {
			if got := rb.flows[f.ID-1]; !reflect.DeepEqual(got, *f) {
				t.Fatalf("%s flow %d:\n got  %+v\n want %+v", tc.name, f.ID, got, *f)
			}
		}
		far := make([]int, len(tc.steps))
		for i := range far {
			far[i] = 200
		}
		if n := len(appendRecordBlock(nil, 1, block(far))); n-len(b) < tc.saved {
			t.Errorf("%s: %d bytes, against %d with ports 200 apart: want %d saved", tc.name, len(b), n, tc.saved)
		}
	}
}
