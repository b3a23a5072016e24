// Package varint reads the varint-packed encodings of pcapflow's index
// and flow-table state with a sticky error, in the style of bufio: once
// a read runs past the end or finds a malformed number, every later read
// returns zero and Bad stays set, so a decoder checks once at the end.
package varint

import "encoding/binary"

// Reader reads from B. The zero value reads nothing.
type Reader struct {
	B   []byte
	Bad bool // a read ran past the end or found a malformed varint
}

func (r *Reader) fail() {
	r.Bad = true
	r.B = nil
}

// Fail marks the input bad, for a decoder that found a value it cannot
// accept.
func (r *Reader) Fail() { r.fail() }

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a signed (zigzag) varint.
func (r *Reader) Varint() int64 {
	u := r.Uvarint()
	return int64(u>>1) ^ -int64(u&1) // as binary.Varint
}

// Bytes reads n bytes; past the end it returns n zero bytes, so that
// callers may index the result.
func (r *Reader) Bytes(n int) []byte {
	if n < 0 || len(r.B) < n {
		r.fail()
		return make([]byte, max(n, 0))
	}
	v := r.B[:n]
	r.B = r.B[n:]
	return v
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.B) == 0 {
		r.fail()
		return 0
	}
	v := r.B[0]
	r.B = r.B[1:]
	return v
}

// Count reads a length and checks it against the bytes left, each item
// taking at least min bytes, so that corrupt input cannot make a decoder
// allocate much.
func (r *Reader) Count(min int) int {
	n := r.Uvarint()
	if n > uint64(len(r.B)/max(min, 1)) {
		r.fail()
		return 0
	}
	return int(n)
}
