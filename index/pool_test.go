package index

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestBufPool fills many buffers of every size a posting buffer takes,
// grows some past a slab's small-buffer limit and frees others, and
// checks that no buffer ever overlaps another: each keeps the bytes
// written to it, and a freed buffer is handed out again.
func TestBufPool(t *testing.T) {
	var pool bufPool
	type buf struct {
		h    bufHandle
		data []byte
	}
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(b *buf, n int) {
		b.data = b.data[:0]
		for range n {
			b.data = append(b.data, byte(rng.Uint32()))
		}
		copy(pool.bytes(b.h)[:n], b.data)
	}
	var live []*buf
	for i := range 20000 {
		switch r := rng.IntN(10); {
		case r < 6 || len(live) == 0: // a new buffer
			n := 1 + rng.IntN(64)
			b := &buf{h: pool.get(n)}
			if b.h.size() < n {
				t.Fatalf("get(%d): a buffer of %d bytes", n, b.h.size())
			}
			fill(b, n)
			live = append(live, b)
		case r < 8: // grow one, keeping its bytes
			b := live[rng.IntN(len(live))]
			if b.h.size() >= 32<<10 {
				continue // a chunk's buffer stays under 32 KiB
			}
			n := b.h.size()*2 + rng.IntN(3000)
			b.h = pool.grow(b.h, len(b.data), n)
			if b.h.size() < n {
				t.Fatalf("grow to %d: a buffer of %d bytes", n, b.h.size())
			}
			if got := pool.bytes(b.h)[:len(b.data)]; !bytes.Equal(got, b.data) {
				t.Fatalf("step %d: grow lost the buffer's bytes", i)
			}
			if rng.IntN(2) == 0 {
				fill(b, b.h.size())
			}
		default: // free one
			j := rng.IntN(len(live))
			pool.put(live[j].h)
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		if i%1000 == 999 {
			for _, b := range live {
				if got := pool.bytes(b.h)[:len(b.data)]; !bytes.Equal(got, b.data) {
					t.Fatalf("step %d: a buffer's bytes changed: another one overlaps it", i)
				}
			}
		}
	}
	if len(pool.slabs) < 2 {
		t.Errorf("%d slabs: the test never left the first", len(pool.slabs))
	}
}
