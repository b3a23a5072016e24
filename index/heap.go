package index

// minHeap is a container/heap of the items that come first by their own
// order: the captures read in time order (stream.go), the records of a
// flow merged from several captures (records.go).
type minHeap[T interface{ before(T) bool }] []T

func (h minHeap[T]) Len() int           { return len(h) }
func (h minHeap[T]) Less(i, j int) bool { return h[i].before(h[j]) }
func (h minHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap[T]) Push(x any)        { *h = append(*h, x.(T)) }
func (h *minHeap[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// second is the item that comes after h[0] (one of its children), or
// the zero T when there is none.
func (h minHeap[T]) second() T {
	var none T
	switch len(h) {
	case 0, 1:
		return none
	case 2:
		return h[1]
	}
	if h[2].before(h[1]) {
		return h[2]
	}
	return h[1]
}
