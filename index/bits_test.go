package index

import (
	"math/rand/v2"
	"testing"
)

// Rice and gamma codes read back what was written, for small and huge
// values, every parameter, and past-the-end reads are noticed.
func TestBits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	type item struct {
		v    uint64
		k    uint
		kind int
	}
	var items []item
	for i := 0; i < 20000; i++ {
		var v uint64
		switch i % 4 {
		case 0:
			v = uint64(r.IntN(300))
		case 1:
			v = r.Uint64() >> r.IntN(64)
		case 2:
			v = 1 << r.IntN(64)
		default:
			v = ^uint64(0) - uint64(r.IntN(3))
		}
		it := item{v: v, k: uint(r.IntN(20)), kind: r.IntN(3)}
		if it.kind == 0 && v == 0 {
			it.v = 1 // gamma codes v >= 1
		}
		if it.kind == 2 {
			it.v &= 1<<it.k - 1
		}
		items = append(items, it)
	}
	var w bitWriter
	for _, it := range items {
		switch it.kind {
		case 0:
			w.gamma(it.v)
		case 1:
			if it.v == ^uint64(0) {
				it.v-- // rice escapes code v+1
			}
			w.rice(it.v, it.k)
		case 2:
			w.write(it.v, it.k)
		}
	}
	rd := bitReader{b: w.bytes()}
	for i, it := range items {
		var got uint64
		want := it.v
		switch it.kind {
		case 0:
			got = rd.gamma()
		case 1:
			if want == ^uint64(0) {
				want--
			}
			got = rd.rice(it.k)
		case 2:
			got = rd.read(it.k)
		}
		if got != want || rd.bad {
			t.Fatalf("item %d %+v: read %d (bad %v)", i, it, got, rd.bad)
		}
	}
	rd.read(9)
	rd.read(9)
	if !rd.bad {
		t.Error("reading past the end is not noticed")
	}
}
