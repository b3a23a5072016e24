package index

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// sortV6 gives the order of a comparison sort by (address, ID), for
// addresses that share their high bits or not, repeat or not.
func TestSortV6(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		n      int
		hi, lo func() uint64
	}{
		{"empty", 0, nil, nil},
		{"one /64", 5000, func() uint64 { return 0xfd00_0000_0000_0001 }, func() uint64 { return r.Uint64N(1 << 20) }},
		{"few hosts", 5000, func() uint64 { return 0x2001_0db8_0000_0000 | r.Uint64N(3) }, func() uint64 { return r.Uint64N(8) }},
		{"random", 5000, r.Uint64, r.Uint64},
		{"same address", 100, func() uint64 { return 7 }, func() uint64 { return 9 }},
	} {
		ps := make([]v6pair, tc.n)
		for i := range ps {
			ps[i] = v6pair{tc.hi(), tc.lo(), uint32(i)} // in ID order, as gathered
		}
		want := slices.Clone(ps)
		slices.SortFunc(want, func(x, y v6pair) int {
			if c := cmp.Compare(x.hi, y.hi); c != 0 {
				return c
			}
			if c := cmp.Compare(x.lo, y.lo); c != 0 {
				return c
			}
			return cmp.Compare(x.id, y.id)
		})
		var a startAttrs
		if got := a.sortV6(ps); !slices.Equal(got, want) {
			t.Errorf("%s: sortV6 differs from a comparison sort", tc.name)
		}
	}
}
