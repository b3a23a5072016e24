package index

import (
	"encoding/binary"
	"fmt"
)

// A posting list holds the records of one flow, in the order they were
// read: for each packet, its capture and its index among that capture's
// records (pcapio.Record.Index). The byte offset is not stored: the index
// keeps the offset of every CheckpointEvery-th record of each capture and
// extraction walks forward from there, so a packet costs about one byte
// instead of four (docs/index.md).
//
// The list is stored in chunks. A chunk is
//
//	uvarint(count) varint(capture - base capture) varint(index - base index) entry*
//
// with the first packet written relative to a base (nothing, in a full
// chunk of its own; the first packet of the block's first flow, in a
// block of posting tails, where flows that start close together have
// close first packets) and each further one as
//
//	uvarint(d), d >= 1            same capture, index = previous + d
//	0 0 varint(c) uvarint(i)      capture previous + c (c != 0), index i
//	0 1 uvarint(b)                same capture, index = previous - b (b >= 0)
//
// Packets of a flow nearly always come in increasing index order, mostly
// less than 128 records apart; a step back happens when a fragment that
// arrived before its datagram's first fragment joins its flow.
type PacketRef struct {
	Capture int32
	Index   int64
}

// chunkMax bounds a chunk's entries; a flow's list is cut into full
// chunks of that many, and its tail.
const chunkMax = 1024

// postingBuf accumulates one flow's current chunk while a capture is
// read, in a buffer of its bufPool. It holds no pointer, so that the
// collector need not scan the million of them a table may hold, nor
// shade one as each packet is added (a write barrier a packet while it
// marks).
type postingBuf struct {
	last PacketRef
	h    bufHandle // the buffer, valid when has
	len  uint32    // bytes used
	n    int32     // packets
	has  bool
}

// add appends one packet.
func (p *postingBuf) add(r PacketRef, pool *bufPool) {
	if !p.has {
		p.h, p.has = pool.get(16), true
	}
	if int(p.len)+24 > p.h.size() {
		p.h = pool.grow(p.h, int(p.len), int(p.len)+24)
	}
	b := pool.bytes(p.h)[:p.len]
	switch {
	case p.n == 0:
		b = binary.AppendUvarint(b, uint64(r.Capture))
		b = binary.AppendUvarint(b, uint64(r.Index))
	case r.Capture == p.last.Capture && r.Index > p.last.Index:
		b = binary.AppendUvarint(b, uint64(r.Index-p.last.Index))
	case r.Capture == p.last.Capture:
		b = append(b, 0, 1)
		b = binary.AppendUvarint(b, uint64(p.last.Index-r.Index))
	default:
		b = append(b, 0, 0)
		b = binary.AppendVarint(b, int64(r.Capture)-int64(p.last.Capture))
		b = binary.AppendUvarint(b, uint64(r.Index))
	}
	p.len = uint32(len(b))
	p.last = r
	p.n++
}

// view is the buffer's contents, for reading, until the buffer next
// changes.
func (p *postingBuf) view(pool *bufPool) postingView {
	if !p.has {
		return postingView{}
	}
	return postingView{pool.bytes(p.h)[:p.len], p.n}
}

// reset empties the buffer for the next chunk.
func (p *postingBuf) reset() { p.len, p.n = 0, 0 }

// free returns the buffer's memory to the pool.
func (p *postingBuf) free(pool *bufPool) {
	if p.has {
		pool.put(p.h)
	}
	*p = postingBuf{}
}

// postingView is a postingBuf's packets as bytes.
type postingView struct {
	b []byte
	n int32
}

// appendChunk appends the buffer as an encoded chunk to dst, its first
// packet relative to base.
func (p postingView) appendChunk(dst []byte, base PacketRef) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.n))
	if p.n == 0 {
		return dst
	}
	// The buffer holds the first packet written out.
	b := p.b
	c, k1 := binary.Uvarint(b)
	i, k2 := binary.Uvarint(b[k1:])
	dst = binary.AppendVarint(dst, int64(c)-int64(base.Capture))
	dst = binary.AppendVarint(dst, int64(i)-base.Index)
	return append(dst, b[k1+k2:]...)
}

// appendRefs appends the buffer's packets to dst.
func (p postingView) appendRefs(dst []PacketRef) []PacketRef {
	out, err := decodeChunk(p.appendChunk(nil, PacketRef{}), PacketRef{}, dst)
	if err != nil {
		panic("index: a posting buffer does not decode: " + err.Error())
	}
	return out
}

// decodeChunk appends the refs of one encoded chunk, whose first packet
// is relative to base, to out. It checks every length against the input,
// so corrupt bytes give an error, never a panic or a huge allocation.
func decodeChunk(b []byte, base PacketRef, out []PacketRef) ([]PacketRef, error) {
	bad := func(what string) ([]PacketRef, error) {
		return out, fmt.Errorf("%w: posting chunk: %s", errCorrupt, what)
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return bad("count")
	}
	if n == 0 {
		return out, nil
	}
	b = b[k:]
	next := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	dc, k1 := binary.Varint(b)
	if k1 <= 0 {
		return bad("first entry")
	}
	b = b[k1:]
	di, k2 := binary.Varint(b)
	if k2 <= 0 {
		return bad("first entry")
	}
	b = b[k2:]
	c := int64(base.Capture) + dc
	cur := PacketRef{int32(c), base.Index + di}
	if c < 0 || c > 1<<31-1 || cur.Index < 0 || cur.Index > 1<<62 {
		return bad("first entry")
	}
	out = append(out, cur)
	for j := uint64(1); j < n; j++ {
		d, ok := next()
		if !ok {
			return bad("truncated")
		}
		if d > 0 {
			if d > 1<<62 {
				return bad("step")
			}
			cur.Index += int64(d)
		} else {
			cmd, ok := next()
			if !ok {
				return bad("truncated")
			}
			switch cmd {
			case 0:
				dc, k := binary.Varint(b)
				if k <= 0 {
					return bad("capture change")
				}
				b = b[k:]
				i, ok := next()
				c := int64(cur.Capture) + dc
				if !ok || dc == 0 || c < 0 || c > 1<<31-1 || i > 1<<62 {
					return bad("capture change")
				}
				cur = PacketRef{int32(c), int64(i)}
			case 1:
				back, ok := next()
				if !ok || back > uint64(cur.Index) {
					return bad("step back")
				}
				cur.Index -= int64(back)
			default:
				return bad("escape")
			}
		}
		out = append(out, cur)
	}
	return out, nil
}

// bufPool hands out byte buffers in power-of-two size classes and takes
// them back, so that the posting buffers of millions of flows that come
// and go cost no garbage and a few large allocations. Buffers are named
// by handles, not slices: a table of them holds no pointer.
type bufPool struct {
	slabs [][]byte        // slabSize each, carved into buffers of up to 4 KiB; a larger buffer has a slab of its own
	free  [16][]bufHandle // by class: 16 << class bytes
	off   int             // where the next buffer is carved from the last slab
}

// bufHandle names a buffer of a bufPool: its slab, its offset in 16-byte
// units, its size class.
type bufHandle struct {
	slab  uint32
	off   uint16
	class uint8
}

const slabSize = 1 << 20

func (h bufHandle) size() int { return 16 << h.class }

func sizeClass(n int) int {
	c := 0
	for 16<<c < n {
		c++
	}
	return c
}

// bytes is the buffer h, empty, with its capacity.
func (p *bufPool) bytes(h bufHandle) []byte {
	off := int(h.off) << 4
	return p.slabs[h.slab][off : off : off+h.size()]
}

// get returns a buffer of at least n bytes.
func (p *bufPool) get(n int) bufHandle {
	c := sizeClass(n)
	if c >= len(p.free) {
		panic(fmt.Sprintf("index: a posting buffer of %d bytes", n))
	}
	if l := p.free[c]; len(l) > 0 {
		h := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		return h
	}
	size := 16 << c
	if size > 4096 {
		p.slabs = append(p.slabs, make([]byte, size))
		return bufHandle{slab: uint32(len(p.slabs) - 1), class: uint8(c)}
	}
	if len(p.slabs) == 0 || p.off+size > slabSize || len(p.slabs[len(p.slabs)-1]) != slabSize {
		p.slabs = append(p.slabs, make([]byte, slabSize))
		p.off = 0
	}
	h := bufHandle{slab: uint32(len(p.slabs) - 1), off: uint16(p.off >> 4), class: uint8(c)}
	p.off += size
	return h
}

// grow returns a buffer of at least n bytes holding the first used bytes
// of h, and takes h back.
func (p *bufPool) grow(h bufHandle, used, n int) bufHandle {
	nh := p.get(max(n, 2*h.size()))
	copy(p.bytes(nh)[:used], p.bytes(h)[:used])
	p.put(h)
	return nh
}

func (p *bufPool) put(h bufHandle) { p.free[h.class] = append(p.free[h.class], h) }

// A flow's postings in a block of tails (and with a flow stored alone):
//
//	uvarint(len(chunk) << 1 | has full chunks) [uvarint(full chunks)] chunk
//
// where chunk is the flow's last, partial chunk (relative to the block's
// base).

// appendTail encodes a flow's full chunk count and tail.
func appendTail(dst []byte, chunks uint32, tail []byte) []byte {
	v := uint64(len(tail)) << 1
	if chunks > 0 {
		v |= 1
	}
	dst = binary.AppendUvarint(dst, v)
	if chunks > 0 {
		dst = binary.AppendUvarint(dst, uint64(chunks))
	}
	return append(dst, tail...)
}

// splitTail reads one flow's chunk count and tail, returning the rest.
func splitTail(b []byte) (chunks uint32, tail, rest []byte, err error) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, nil, fmt.Errorf("%w: posting tail", errCorrupt)
	}
	b = b[k:]
	if v&1 != 0 {
		c, k := binary.Uvarint(b)
		if k <= 0 || c > 1<<31 {
			return 0, nil, nil, fmt.Errorf("%w: posting tail", errCorrupt)
		}
		chunks, b = uint32(c), b[k:]
	}
	n := v >> 1
	if n > uint64(len(b)) {
		return 0, nil, nil, fmt.Errorf("%w: posting tail", errCorrupt)
	}
	return chunks, b[:n], b[n:], nil
}

// appendTailsHeader starts a block of tails.
func appendTailsHeader(dst []byte, holes uint64, base PacketRef) []byte {
	dst = binary.AppendUvarint(dst, holes)
	dst = binary.AppendUvarint(dst, uint64(base.Capture))
	return binary.AppendUvarint(dst, uint64(base.Index))
}

// readTailsHeader reads it.
func readTailsHeader(b []byte) (holes uint64, base PacketRef, rest []byte, err error) {
	var v [3]uint64
	for i := range v {
		x, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, base, nil, fmt.Errorf("%w: tails header", errCorrupt)
		}
		v[i], b = x, b[k:]
	}
	if v[1] > 1<<31-1 || v[2] > 1<<62 {
		return 0, base, nil, fmt.Errorf("%w: tails header", errCorrupt)
	}
	return v[0], PacketRef{int32(v[1]), int64(v[2])}, b, nil
}
