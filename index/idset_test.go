package index

import (
	"slices"
	"testing"
)

// A capture's flow IDs come back in ascending order, once each, in
// chunks of the size asked: the flows it continues (below base, in any
// order, some twice) first, then those that began in it.
func TestIDSet(t *testing.T) {
	s := &idSet{base: 1000}
	var want []uint64
	for _, id := range []uint64{700, 3, 999, 3, 1000, 1001, 1063, 1064, 1200, 700, 5000} {
		s.add(id)
		if !slices.Contains(want, id) {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	for _, max := range []int{1, 3, 100} {
		var got []uint64
		err := s.each(max, func(ids []uint64) error {
			if len(ids) > max || len(ids) == 0 {
				t.Errorf("chunk of %d IDs, max %d", len(ids), max)
			}
			got = append(got, ids...)
			return nil
		})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("max %d: %v, %v; want %v", max, got, err, want)
		}
	}
}
