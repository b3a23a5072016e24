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
