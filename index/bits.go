package index

import "math/bits"

// bitWriter appends bits, least significant first, to a byte slice.
type bitWriter struct {
	b    []byte
	acc  uint64
	nacc uint
}

// write appends the n low bits of v (n <= 56).
func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= (v & (1<<n - 1)) << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.b = append(w.b, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// writeLong appends the n low bits of v (n <= 64).
func (w *bitWriter) writeLong(v uint64, n uint) {
	if n > 48 {
		w.write(v, 48)
		v, n = v>>48, n-48
	}
	w.write(v, n)
}

// gamma writes v >= 1 in Elias-gamma code: as many zeros as v has bits
// after its leading one, a one, and those bits: 2*floor(log2 v)+1 bits.
func (w *bitWriter) gamma(v uint64) {
	n := uint(bits.Len64(v)) - 1
	for z := n; z > 0; z -= min(z, 48) {
		w.write(0, min(z, 48))
	}
	w.write(1, 1)
	w.writeLong(v, n)
}

// riceEscape is the unary count that marks an escape.
const riceEscape = 15

// rice writes v >= 0 with parameter k: v>>k in unary (that many ones
// and a zero), then the k low bits. Values whose quotient would reach
// riceEscape are written as riceEscape ones, then gamma(v+1).
func (w *bitWriter) rice(v uint64, k uint) {
	if q := v >> k; q < riceEscape {
		w.write(1<<q-1, uint(q)+1) // q ones, then a zero
		w.write(v, k)
		return
	}
	w.write(1<<riceEscape-1, riceEscape)
	w.gamma(v + 1)
}

// bytes flushes the last partial byte and returns the bits.
func (w *bitWriter) bytes() []byte {
	if w.nacc > 0 {
		w.b = append(w.b, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.b
}

// bitReader reads what a bitWriter wrote; reading past the end sets err.
type bitReader struct {
	b    []byte
	acc  uint64
	nacc uint
	bad  bool
}

func (r *bitReader) fill() {
	for r.nacc <= 56 && len(r.b) > 0 {
		r.acc |= uint64(r.b[0]) << r.nacc
		r.b = r.b[1:]
		r.nacc += 8
	}
}

// read returns the next n bits (n <= 56).
func (r *bitReader) read(n uint) uint64 {
	if r.nacc < n {
		r.fill()
		if r.nacc < n {
			r.bad = true
			r.nacc = 0
			return 0
		}
	}
	v := r.acc & (1<<n - 1)
	r.acc >>= n
	r.nacc -= n
	return v
}

// readLong returns the next n bits (n <= 64).
func (r *bitReader) readLong(n uint) uint64 {
	if n > 48 {
		lo := r.read(48)
		return lo | r.read(n-48)<<48
	}
	return r.read(n)
}

func (r *bitReader) gamma() uint64 {
	n := uint(0)
	for r.read(1) == 0 {
		if n++; n > 63 || r.bad {
			r.bad = true
			return 1
		}
	}
	return 1<<n | r.readLong(n)
}

func (r *bitReader) rice(k uint) uint64 {
	q := r.unary(riceEscape)
	if q == riceEscape {
		return r.gamma() - 1
	}
	return uint64(q)<<k | r.read(k)
}

// unary reads a run of ones, at most max (<= 56) of them, and the zero
// that ends a shorter run: it returns the number of ones. Codes in
// unary are read a word at a time, not a bit at a time.
func (r *bitReader) unary(max uint) uint {
	if r.nacc <= max {
		r.fill()
	}
	// Bits above nacc are zero, so the run stops there at the latest.
	q := uint(bits.TrailingZeros64(^r.acc))
	if q >= max {
		r.acc >>= max
		r.nacc -= max
		return max
	}
	if q >= r.nacc { // the input ends inside the run
		r.bad, r.acc, r.nacc = true, 0, 0
		return 0
	}
	r.acc >>= q + 1
	r.nacc -= q + 1
	return q
}

// riceLen is the number of bits rice(v, k) writes.
func riceLen(v uint64, k uint) int {
	if q := v >> k; q < riceEscape {
		return int(q) + 1 + int(k)
	}
	return riceEscape + 2*(bits.Len64(v+1)-1) + 1
}
