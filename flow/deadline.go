package flow

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
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && x[l].at < x[m].at {
			m = l
		}
		if r < n && x[r].at < x[m].at {
			m = r
		}
		if m == i {
			break
		}
		x[m], x[i] = x[i], x[m]
		i = m
	}
	*h = x
	return d
}
