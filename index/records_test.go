package index

import (
	"cmp"
	"math/rand"
	"slices"
	"testing"
)

// The radix sort of long ref lists gives capture order, whatever the
// number of records of the capture.
func TestSortRefs(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, tc := range []struct {
		n   int
		max int64
	}{
		{10, 1 << 20}, {1 << 16, 1 << 18}, {1 << 17, 2 << 30}, {200000, 1 << 40}, {100000, 1 << 62},
	} {
		refs := make([]flowRef, tc.n)
		seen := map[int64]bool{}
		for i := range refs {
			o := r.Int63n(tc.max)
			for seen[o] { // one ref per record (a flow's own)
				o = r.Int63n(tc.max)
			}
			seen[o] = true
			refs[i] = flowRef{Index: o, Flow: uint64(i)}
		}
		want := slices.Clone(refs)
		slices.SortFunc(want, func(a, b flowRef) int { return cmp.Compare(a.Index, b.Index) })
		sortRefs(refs)
		if !slices.Equal(refs, want) {
			t.Errorf("%d refs below %d: not in record order", tc.n, tc.max)
		}
	}
}
