package index

import (
	"encoding/binary"
	"fmt"
)

// A posting list holds the records of one flow: for each packet, its byte
// offset and length in the capture. It is stored in chunks of up to
// ChunkSize entries. A chunk is
//
//	uvarint(count) { zigzag-varint(offset - previous offset) uvarint(length) }*
//
// where the first "previous offset" is 0. Offsets usually grow, so deltas
// are small; they may shrink when a held-back fragment joins its flow late,
// hence the signed encoding. About 5 bytes per packet.
const ChunkSize = 512

// PacketRef locates one record of a flow.
type PacketRef struct {
	Offset int64
	Length int32
}

// postingBuf accumulates one flow's current chunk.
type postingBuf struct {
	buf  []byte
	n    int
	last int64
}

// slab hands out small buffers carved from large allocations, so that a
// million short posting lists cost a few allocations, not a million.
type slab struct{ free []byte }

const slabPiece = 32

func (s *slab) take() []byte {
	if len(s.free) < slabPiece {
		s.free = make([]byte, 1<<20)
	}
	b := s.free[:0:slabPiece]
	s.free = s.free[slabPiece:]
	return b
}

func (p *postingBuf) add(off int64, length int32, s *slab) {
	if p.buf == nil {
		p.buf = s.take()
	}
	p.buf = binary.AppendVarint(p.buf, off-p.last)
	p.buf = binary.AppendUvarint(p.buf, uint64(length))
	p.last = off
	p.n++
}

// chunk returns the encoded chunk and resets the buffer for the next one.
func (p *postingBuf) chunk(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.n))
	dst = append(dst, p.buf...)
	p.buf, p.n, p.last = p.buf[:0], 0, 0
	return dst
}

// decodeChunk appends the refs of one encoded chunk to out.
func decodeChunk(b []byte, out []PacketRef) ([]PacketRef, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return out, fmt.Errorf("bad posting chunk header")
	}
	b = b[k:]
	var last int64
	for i := uint64(0); i < n; i++ {
		d, k1 := binary.Varint(b)
		if k1 <= 0 {
			return out, fmt.Errorf("truncated posting chunk")
		}
		b = b[k1:]
		l, k2 := binary.Uvarint(b)
		if k2 <= 0 || l > 1<<30 {
			return out, fmt.Errorf("truncated posting chunk")
		}
		b = b[k2:]
		last += d
		out = append(out, PacketRef{Offset: last, Length: int32(l)})
	}
	return out, nil
}

// chunkCopy encodes the buffer as a chunk without resetting it.
func (p *postingBuf) chunkCopy(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.n))
	return append(dst, p.buf...)
}
