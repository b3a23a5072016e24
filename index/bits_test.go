package index

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
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

// seq is the IDs from lo to hi, inclusive.
func seq(lo, hi uint64) []uint64 {
	var out []uint64
	for id := lo; id <= hi; id++ {
		out = append(out, id)
	}
	return out
}

// ID lists read back what was written in each of their codes, and each
// code is chosen where it is the shortest: dense lists as bitmaps, IDs
// thousands apart as Rice codes, a few IDs as varints, all IDs of a span
// but a few as the list of those missing.
func TestIDLists(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	spread := func(first uint64, n int, gap uint64) []uint64 {
		ids := make([]uint64, n)
		id := first
		for i := range ids {
			id += 1 + r.Uint64N(2*gap)
			ids[i] = id
		}
		return ids
	}
	for _, tc := range []struct {
		name  string
		first uint64
		ids   []uint64
		mode  byte
	}{
		{"empty", 7, nil, listDeltas},
		{"one", 7, []uint64{7}, listDeltas},
		{"few far apart", 1, []uint64{5, 70000, 9000000}, listDeltas},
		{"dense", 100, spread(99, 5000, 1), listBitmap},
		{"a client port", 1, spread(0, 3000, 28000), listRice},
		{"a community bucket", 1000, spread(1000, 300, 2048), listRice},
		{"close", 1, spread(0, 2000, 20), listRice},
		{"huge gaps", 1, spread(0, 100, 1<<40), listDeltas}, // beyond Rice parameters
		{"every one", 10, seq(10, 5000), listGaps},
		{"all but a few (the TCP flows)", 10, slices.DeleteFunc(seq(10, 20000), func(id uint64) bool { return id%997 == 0 }), listGaps},
	} {
		b := appendIDs(nil, tc.first, tc.ids)
		_, k := binary.Uvarint(b)
		if b[k] != tc.mode {
			t.Errorf("%s: code %d, want %d", tc.name, b[k], tc.mode)
		}
		got, err := decodeIDs(b, tc.first, nil)
		if err != nil || !slices.Equal(got, tc.ids) {
			t.Errorf("%s: read back %d IDs, %v; wrote %d", tc.name, len(got), err, len(tc.ids))
		}
		for cut := 0; cut < len(b); cut++ {
			if got, err := decodeIDs(b[:cut], tc.first, nil); err == nil && !slices.Equal(got, tc.ids) {
				t.Errorf("%s: cut at %d of %d bytes: %d IDs and no error", tc.name, cut, len(b), len(got))
				break
			}
		}
	}
}

// idChunk answers membership as the decoded list does, in each code,
// for candidates in ascending order.
func TestIDChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, density := range []uint64{2, 3, 50, 5000} { // bitmap for the dense, Rice and deltas for the rest
		var ids []uint64
		for id := uint64(1000); id < 30000; id++ {
			if r.Uint64N(density) == 0 {
				ids = append(ids, id)
			}
		}
		in := map[uint64]bool{}
		for _, id := range ids {
			in[id] = true
		}
		var ch idChunk
		if err := ch.load(appendIDs(nil, 1000, ids), 1000); err != nil {
			t.Fatal(err)
		}
		for c := uint64(900); c < 30100; c += 1 + r.Uint64N(3) {
			if ch.has(c) != in[c] {
				t.Fatalf("density 1/%d: has(%d) = %v", density, c, !in[c])
			}
		}
	}
}

// sortIDs gives what sorting and compacting gives, for IDs dense in
// their span (sorted in a bitmap) and sparse ones (by comparison).
func TestSortIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var bitmap []uint64
	for _, tc := range []struct {
		n    int
		span uint64
	}{{1, 1}, {5, 3}, {1000, 1000}, {1000, 1200}, {1000, 64001}, {1000, 64 * 1000}, {1000, 1 << 40}, {20000, 30000}} {
		ids := make([]uint64, tc.n)
		base := rng.Uint64N(1 << 50)
		for i := range ids {
			ids[i] = base + rng.Uint64N(tc.span)
		}
		want := slices.Clone(ids)
		slices.Sort(want)
		want = slices.Compact(want)
		if got := sortIDs(ids, &bitmap); !slices.Equal(got, want) {
			t.Errorf("%d IDs in a span of %d: %d sorted, want %d", tc.n, tc.span, len(got), len(want))
		}
		for _, w := range bitmap {
			if w != 0 {
				t.Fatal("the bitmap is left dirty")
			}
		}
	}
}
