package flow

import "math"

// deadline is when a connection is next looked at for its timeout. A
// connection may have several (one from when it began, one from when it
// closed); each is no later than the connection's real end, which is
// computed when the deadline comes, so that a packet never has to move
// its connection in the queue.
//
// serial is the low 32 bits of the connection's serial: a deadline of an
// ended connection is dropped. When a later connection in the same slot
// has the same low bits (4 G connections later, within a timeout), the
// deadline only makes expire compute that connection's real end, which
// is what any deadline of it does: 16 bytes a deadline instead of 24.
type deadline struct {
	at     int64
	conn   int32
	serial uint32
}

// deadlineQueue holds the deadlines in time order. Nearly all of them
// are the clock, which only grows, plus one of the two timeouts: pushed
// in time order, they queue in that timeout's FIFO, whose head is its
// earliest. The others (a deadline moved when it came, those of a
// restored table) go in a heap. The earliest of the three heads comes
// first. A heap of every deadline cost a cache miss a level on each pop,
// at the rate connections end: 0.14-0.16 s of the flow table's 3 s on the
// 2 GB real capture.
type deadlineQueue struct {
	fifo [2]fifo // by timeout: idle, close
	heap deadlines
	// next is the earliest deadline's time (MaxInt64 if none), which
	// every packet compares with the clock, and nextIn the class of the
	// FIFO it heads, or byOther for the heap.
	next   int64
	nextIn int
}

// Deadline classes: the timeout a deadline is the clock plus.
const (
	byIdle  = 0
	byClose = 1
	byOther = 2
)

// fifo is a queue of deadlines in time order: q[head:].
type fifo struct {
	q    []deadline
	head int
}

func (f *fifo) push(d deadline) {
	if f.head > 0 && f.head >= len(f.q)/2 {
		// Reuse the popped half, so that the queue's memory follows
		// what is queued.
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, d)
}

func (f *fifo) len() int { return len(f.q) - f.head }

// push queues d, which is the clock plus the timeout of class c.
func (q *deadlineQueue) push(d deadline, c int) {
	earliest := q.len() == 0 || d.at < q.next
	if c < byOther {
		if f := &q.fifo[c]; f.len() == 0 || f.q[len(f.q)-1].at <= d.at {
			f.push(d)
		} else {
			c = byOther
		}
	}
	if c == byOther {
		q.heap.push(d)
	}
	if earliest {
		// d heads its FIFO (nothing queued is earlier), or the heap.
		q.next, q.nextIn = d.at, c
	}
}

// due reports whether the earliest deadline is before now.
func (q *deadlineQueue) due(now int64) bool { return q.next < now && q.len() > 0 }

// setNext finds the earliest deadline again, after it was removed.
func (q *deadlineQueue) setNext() {
	q.next, q.nextIn = math.MaxInt64, byOther
	for c := range q.fifo {
		if f := &q.fifo[c]; f.len() > 0 && f.q[f.head].at < q.next {
			q.next, q.nextIn = f.q[f.head].at, c
		}
	}
	if len(q.heap) > 0 && q.heap[0].at < q.next {
		q.next, q.nextIn = q.heap[0].at, byOther
	}
}

func (q *deadlineQueue) len() int { return q.fifo[0].len() + q.fifo[1].len() + len(q.heap) }

// head is the earliest deadline; the queue must not be empty.
func (q *deadlineQueue) head() *deadline {
	if q.nextIn < byOther {
		f := &q.fifo[q.nextIn]
		return &f.q[f.head]
	}
	return &q.heap[0]
}

// pop removes the earliest deadline; the queue must not be empty.
func (q *deadlineQueue) pop() deadline {
	var d deadline
	if q.nextIn < byOther {
		f := &q.fifo[q.nextIn]
		d = f.q[f.head]
		f.q[f.head] = deadline{}
		f.head++
	} else {
		d = q.heap.pop()
	}
	q.setNext()
	return d
}

// filter keeps the deadlines keep says to, in their order.
func (q *deadlineQueue) filter(keep func(deadline) bool) {
	for c := range q.fifo {
		f := &q.fifo[c]
		x := f.q[:0]
		for _, d := range f.q[f.head:] {
			if keep(d) {
				x = append(x, d)
			}
		}
		clear(f.q[len(x):])
		f.q, f.head = x, 0
	}
	x := q.heap[:0]
	for _, d := range q.heap {
		if keep(d) {
			x = append(x, d)
		}
	}
	clear(q.heap[len(x):])
	for i := len(x)/2 - 1; i >= 0; i-- {
		x.down(i)
	}
	q.heap = x
	q.setNext()
}

// deadlines is a min-heap by time.
type deadlines []deadline

func (h *deadlines) push(d deadline) {
	*h = append(*h, d)
	x := *h
	for i := len(x) - 1; i > 0; {
		p := (i - 1) / 2
		if x[p].at <= x[i].at {
			break
		}
		x[p], x[i] = x[i], x[p]
		i = p
	}
}

func (h *deadlines) pop() deadline {
	x := *h
	d := x[0]
	n := len(x) - 1
	x[0] = x[n]
	x = x[:n]
	x.down(0)
	*h = x
	return d
}

// down moves entry i down to its place below.
func (x deadlines) down(i int) {
	n := len(x)
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && x[l].at < x[m].at {
			m = l
		}
		if r < n && x[r].at < x[m].at {
			m = r
		}
		if m == i {
			return
		}
		x[m], x[i] = x[i], x[m]
		i = m
	}
}

// current reports whether d is a deadline of the connection in its slot
// now, not of one that ended (the slot empty or holding another).
func (t *Table) current(d deadline) bool {
	c := t.conn(d.conn)
	return c.serial != 0 && uint32(c.serial) == d.serial
}

// compactDeadlines drops the deadlines of connections that have ended,
// which expire would skip when they came due. Without it the queue holds
// a deadline for every connection begun within the idle timeout, ended
// or not: on the 2 GB real capture (47 s, well within 10 minutes) 850 k
// of them, 13.5 MB, for 290 k live flows. It runs when the queue has
// doubled since the last time (plus 4096), so each entry is looked at a
// constant number of times on average.
func (t *Table) compactDeadlines() {
	t.deadline.filter(t.current)
	t.compactAt = 2*t.deadline.len() + 4096
}
