package flow

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The queue gives its deadlines back earliest first, each once, whatever
// order they were pushed in and whichever class they were pushed as
// (a class's deadlines out of order go to the heap), also after a
// filter, which keeps the deadlines it is told to.
func TestDeadlineQueue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inOrder bool // each class pushed in time order, as the table does
	}{{"in order", true}, {"any order", false}} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var q deadlineQueue
			var clock [2]int64
			var want []int64
			popped := 0
			check := func(d deadline, last *int64) {
				if d.at < *last {
					t.Fatalf("deadline %d after %d", d.at, *last)
				}
				*last = d.at
				popped++
			}
			var last int64 = -1 << 63
			for i := 0; i < 20000; i++ {
				switch r := rng.IntN(10); {
				case r < 6:
					c := rng.IntN(3)
					at := rng.Int64N(1 << 20)
					if tc.inOrder && c < byOther {
						clock[c] += rng.Int64N(100)
						at = clock[c] + int64(c)*50
					}
					if at < last {
						at = last // never before what was popped
					}
					q.push(deadline{at: at, conn: int32(i)}, c)
					want = append(want, at)
				case r < 9:
					if q.len() > 0 {
						first := *q.head()
						got := q.pop()
						if got != first {
							t.Fatalf("popped %v, head said %v", got, first)
						}
						check(got, &last)
					}
				default:
					q.filter(func(d deadline) bool { return d.conn%7 != 0 })
				}
			}
			for q.len() > 0 {
				check(q.pop(), &last)
			}
			if q.len() != 0 || popped == 0 || popped > len(want) {
				t.Fatalf("%d left, %d popped of %d pushed", q.len(), popped, len(want))
			}
			if tc.inOrder && len(q.heap) != 0 {
				t.Fatal("in-order deadlines went to the heap")
			}
		})
	}
}

// Without filtering, every deadline pushed comes out, in time order.
func TestDeadlineQueueAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var q deadlineQueue
	var pushed, got []int64
	var clock int64
	for i := 0; i < 5000; i++ {
		clock += rng.Int64N(10)
		d := deadline{at: clock + int64(rng.IntN(2))*1000, conn: int32(i)}
		c := int(d.at-clock) / 1000
		if rng.IntN(10) == 0 {
			d.at, c = clock+rng.Int64N(2000), byOther
		}
		q.push(d, c)
		pushed = append(pushed, d.at)
	}
	for q.len() > 0 {
		got = append(got, q.pop().at)
	}
	slices.Sort(pushed)
	if !slices.Equal(got, pushed) {
		t.Fatalf("%d deadlines out of %d pushed, or out of order", len(got), len(pushed))
	}
}
