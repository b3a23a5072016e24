package reasm

import (
	"math/rand/v2"
	"testing"

	"github.com/pcapflow/pcapflow/pcapio"
)

// BenchmarkStream feeds 1448-byte segments of one direction: in order, with
// every tenth segment swapped with its successor (the common reordering),
// and with every segment sent twice (retransmission of everything). The
// in-order path must not copy or allocate: the sink gets the segment's
// own bytes.
func BenchmarkStream(b *testing.B) {
	const mss, nseg = 1448, 4096
	payload := make([]byte, mss)
	for i := range payload {
		payload[i] = byte(i)
	}
	inOrder := make([]int, nseg)
	for i := range inOrder {
		inOrder[i] = i
	}
	swapped := append([]int(nil), inOrder...)
	for i := 0; i+1 < nseg; i += 10 {
		swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
	}
	twice := make([]int, 0, 2*nseg)
	for _, i := range inOrder {
		twice = append(twice, i, i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shuffled := append([]int(nil), inOrder...)
	for i := 0; i+8 <= nseg; i += 8 { // reorder within windows of 8 segments
		w := shuffled[i : i+8]
		rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
	}
	for _, tc := range []struct {
		name  string
		order []int
	}{{"in-order", inOrder}, {"swap-1in10", swapped}, {"window-8", shuffled}, {"all-twice", twice}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(nseg * mss)
			b.ReportAllocs()
			var got uint64
			sink := SinkFunc(func(_ int64, p []byte) error { got += uint64(len(p)); return nil })
			for i := 0; i < b.N; i++ {
				s := NewStream(Policy{}, sink)
				var isn uint32 = 0xfffff000 // wraps during the stream
				s.Segment(0, isn, pcapio.TCPSyn, nil, 0)
				for _, k := range tc.order {
					s.Segment(int64(k), isn+1+uint32(k*mss), pcapio.TCPAck, payload, mss)
				}
				s.Segment(0, isn+1+uint32(nseg*mss), pcapio.TCPFin|pcapio.TCPAck, nil, 0)
				if s.Err() != nil {
					b.Fatal(s.Err())
				}
			}
			if want := uint64(b.N) * nseg * mss; got != want {
				b.Fatalf("delivered %d bytes, want %d", got, want)
			}
		})
	}
}
