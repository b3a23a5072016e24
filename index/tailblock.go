package index

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/pcapflow/pcapflow/flow"
)

// Postings on disk are bit-packed. A flow's packets step forward through
// its capture's records, mostly a few dozen to a few hundred records
// apart, which Rice codes store in about a byte, where varints take two.
//
// A block of posting tails (Q and R values) holds the postings not in
// full chunks of the flows of a block of IDs, those its block of flow
// records holds (F or G, written with it):
//
//	uvarint(base capture) uvarint(base index) u8(k) u8(k1) bits
//
// The base is the first packet of the block's first flow. How many of a
// flow's packets are in full chunks and how many in its tail follows from
// the packet count of its record (tailSplit), so neither is stored. For
// each flow with a tail, in ID order, the bits hold
//
//	its first packet, from the previous flow's first (the base, for the
//	  first flow): gamma(1) and rice(index step, k1) in the same capture
//	  and a step of 0 or more records, which is nearly always (IDs are
//	  given in first-packet order); gamma(2) and gamma(records back) for
//	  a step back in the same capture; gamma(zigzag(capture step) + 2)
//	  and gamma(index + 1) in another capture;
//	when the tail has more than ownKMin packets, a bit: 1 if the flow's
//	  steps use a parameter of their own, in the 5 bits that follow,
//	  rather than the block's k (an elephant's tail among short flows);
//	then count-1 steps
//
// and a full chunk (P values) is
//
//	u8(k) bits: gamma(count + 1) gamma(capture + 1) gamma(index + 1) steps
//
// A step to the next packet is, in unary, q = (d-1)>>k ones and a zero,
// then the k low bits of d-1, for a step of d >= 1 records forward in
// the same capture; or, when q would reach 14:
//
//	14 ones, a zero, gamma(d)                      a long step forward
//	15 ones, a zero, gamma(zigzag(c)) gamma(index + 1)   to capture + c (c != 0), record index
//	15 ones, a one, gamma(b + 1)                   b records back (a held fragment)

const stepUnary = 14

// ownKMin is the tail length above which a flow may code its steps with a
// Rice parameter of its own. Shorter tails rarely gain the 5 bits the
// parameter takes, and the flag bit would cost every short flow.
const ownKMin = 2

// tailSplit is how a flow of n packets is stored: in full chunks of
// chunkMax (P keys, cut as the packets come) and a tail of the rest.
func tailSplit(n uint64) (chunks uint32, tail uint64) {
	return uint32(n / chunkMax), n % chunkMax
}

// checkSplit reports a flow whose full chunks and tail are not what its
// packet count says: a decoder could not find them again.
func checkSplit(f *flow.Flow, chunks uint32, tail int) error {
	if c, n := tailSplit(f.Packets); c != chunks || n != uint64(tail) {
		return fmt.Errorf("flow %d: %d packets, but %d full chunks and a tail of %d", f.ID, f.Packets, chunks, tail)
	}
	return nil
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// riceK picks a Rice parameter for values of the given mean.
func riceK(sum, n uint64) uint {
	if n == 0 || sum < n {
		return 0
	}
	return uint(min(bits.Len64(sum/n*11/16), 24)) // about log2(mean * ln 2)
}

func writeSteps(w *bitWriter, refs []PacketRef, k uint) {
	for i := 1; i < len(refs); i++ {
		p, c := refs[i-1], refs[i]
		switch {
		case c.Capture == p.Capture && c.Index > p.Index:
			v := uint64(c.Index - p.Index - 1)
			if q := v >> k; q < stepUnary {
				w.write(1<<q-1, uint(q)+1)
				w.write(v, k)
			} else {
				w.write(1<<stepUnary-1, stepUnary+1)
				w.gamma(v + 1)
			}
		case c.Capture != p.Capture:
			w.write(1<<(stepUnary+1)-1, stepUnary+2)
			w.gamma(zigzag(int64(c.Capture) - int64(p.Capture)))
			w.gamma(uint64(c.Index) + 1)
		default:
			w.write(1<<(stepUnary+2)-1, stepUnary+2)
			w.gamma(uint64(p.Index-c.Index) + 1)
		}
	}
}

func readSteps(r *bitReader, out []PacketRef, n int, k uint) ([]PacketRef, error) {
	cur := out[len(out)-1]
	for i := 1; i < n; i++ {
		q := uint64(r.unary(stepUnary + 1))
		switch {
		case q < stepUnary:
			cur.Index += int64(q<<k|r.read(k)) + 1
		case q == stepUnary:
			cur.Index += int64(r.gamma())
		case r.read(1) == 0:
			c := int64(cur.Capture) + unzigzag(r.gamma())
			if c < 0 || c > 1<<31-1 {
				return out, fmt.Errorf("%w: posting capture step", errCorrupt)
			}
			cur.Capture = int32(c)
			cur.Index = int64(r.gamma() - 1)
		default:
			b := r.gamma() - 1
			if b > uint64(cur.Index) {
				return out, fmt.Errorf("%w: posting step back", errCorrupt)
			}
			cur.Index -= int64(b)
		}
		if r.bad || cur.Index < 0 || cur.Index > 1<<62 {
			return out, fmt.Errorf("%w: postings cut short", errCorrupt)
		}
		out = append(out, cur)
	}
	return out, nil
}

// stepBits is what the steps of refs cost with parameter k.
func stepBits(refs []PacketRef, k uint) int {
	n := 0
	for i := 1; i < len(refs); i++ {
		p, c := refs[i-1], refs[i]
		if c.Capture != p.Capture || c.Index <= p.Index {
			n += 40 // rare: the same whatever k
			continue
		}
		v := uint64(c.Index - p.Index - 1)
		if q := v >> k; q < stepUnary {
			n += int(q) + 1 + int(k)
		} else {
			n += stepUnary + 1 + 2*bits.Len64(v+1) - 1
		}
	}
	return n
}

// bestK is the Rice parameter that codes the steps of refs in the fewest
// bits, among those near the one their mean suggests.
func bestK(refs []PacketRef) uint {
	k0 := riceK(stepSum(refs))
	best, bk := 1<<30, k0
	for k := max(k0, 2) - 2; k <= min(k0+2, 24); k++ {
		if n := stepBits(refs, k); n < best {
			best, bk = n, k
		}
	}
	return bk
}

func stepSum(refs []PacketRef) (sum, n uint64) {
	for i := 1; i < len(refs); i++ {
		if d := refs[i].Index - refs[i-1].Index; refs[i].Capture == refs[i-1].Capture && d > 0 {
			sum += uint64(d - 1)
			n++
		}
	}
	return sum, n
}

// appendChunkBits encodes a full chunk.
func appendChunkBits(dst []byte, refs []PacketRef) []byte {
	k := bestK(refs)
	dst = append(dst, byte(k))
	w := bitWriter{b: dst}
	w.gamma(uint64(len(refs)) + 1)
	if len(refs) > 0 {
		w.gamma(uint64(refs[0].Capture) + 1)
		w.gamma(uint64(refs[0].Index) + 1)
		writeSteps(&w, refs, k)
	}
	return w.bytes()
}

// decodeChunkBits appends a full chunk's refs to out.
func decodeChunkBits(b []byte, out []PacketRef) ([]PacketRef, error) {
	if len(b) < 1 || b[0] > 40 {
		return out, fmt.Errorf("%w: posting chunk", errCorrupt)
	}
	r := bitReader{b: b[1:]}
	n := r.gamma() - 1
	if n == 0 {
		return out, nil
	}
	if n > uint64(len(b))*8 {
		return out, fmt.Errorf("%w: posting chunk count", errCorrupt)
	}
	c, i := r.gamma()-1, r.gamma()-1
	if r.bad || c > 1<<31-1 || i > 1<<62 {
		return out, fmt.Errorf("%w: posting chunk", errCorrupt)
	}
	out = append(out, PacketRef{int32(c), int64(i)})
	return readSteps(&r, out, int(n), uint(b[0]))
}

// tailOf is one present flow's postings in a block of tails.
type tailOf struct {
	chunks uint32
	refs   []PacketRef
}

// appendTailBlock encodes the tails of a block's flows: tails[i] is the
// postings of flows[i], in ID order. A tail that is not what its record's
// packet count says is an error (checkSplit).
func appendTailBlock(dst []byte, base PacketRef, flows []*flow.Flow, tails []tailOf) ([]byte, error) {
	var sum, n, sum1, n1 uint64
	prev := base
	for i, t := range tails {
		if err := checkSplit(flows[i], t.chunks, len(t.refs)); err != nil {
			return dst, err
		}
		s, c := stepSum(t.refs)
		sum, n = sum+s, n+c
		if len(t.refs) > 0 {
			if f := t.refs[0]; f.Capture == prev.Capture && f.Index >= prev.Index {
				sum1 += uint64(f.Index - prev.Index)
				n1++
			}
			prev = t.refs[0]
		}
	}
	// The block's parameter is the one most of its flows would pick; a
	// flow that saves by its own writes it.
	var votes [25]int
	var own [flowBlock]uint
	for i, t := range tails {
		if len(t.refs) > ownKMin {
			own[i] = bestK(t.refs)
			votes[own[i]] += len(t.refs)
		}
	}
	k := riceK(sum, n)
	for j, v := range votes {
		if v > votes[k] {
			k = uint(j)
		}
	}
	k1 := riceK(sum1, n1)
	dst = binary.AppendUvarint(dst, uint64(base.Capture))
	dst = binary.AppendUvarint(dst, uint64(base.Index))
	dst = append(dst, byte(k), byte(k1))
	w := bitWriter{b: dst}
	prev = base
	for ti, t := range tails {
		if len(t.refs) == 0 {
			continue
		}
		f := t.refs[0]
		switch {
		case f.Capture == prev.Capture && f.Index >= prev.Index:
			w.gamma(1)
			w.rice(uint64(f.Index-prev.Index), k1)
		case f.Capture == prev.Capture:
			w.gamma(2)
			w.gamma(uint64(prev.Index - f.Index))
		default:
			w.gamma(zigzag(int64(f.Capture)-int64(prev.Capture)) + 2)
			w.gamma(uint64(f.Index) + 1)
		}
		kf := k
		if len(t.refs) > ownKMin {
			if o := own[ti]; o != k && stepBits(t.refs, o)+5 < stepBits(t.refs, k) {
				w.write(1, 1)
				w.write(uint64(o), 5)
				kf = o
			} else {
				w.write(0, 1)
			}
		}
		writeSteps(&w, t.refs, kf)
		prev = f
	}
	return w.bytes(), nil
}

// tailBlock is a decoded block of tails.
type tailBlock struct {
	tails [flowBlock]tailOf // by ID - first; the flows of its record block
}

// decodeTailBlock decodes the block of tails of record block rb. The
// refs of all its flows share one slice, appended to arena[:0] (nil: a
// new one); it returns that slice, for a caller that decodes block after
// block into the same space and keeps none of the refs past the next
// call.
func decodeTailBlock(b []byte, rb *recordBlock, tb *tailBlock, arena []PacketRef) ([]PacketRef, error) {
	bad := func() error { return fmt.Errorf("%w: posting tails", errCorrupt) }
	var hdr [2]uint64
	for i := range hdr {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return arena, bad()
		}
		hdr[i], b = v, b[k:]
	}
	if len(b) < 2 || hdr[0] > 1<<31-1 || hdr[1] > 1<<62 || b[0] > 40 || b[1] > 40 {
		return arena, bad()
	}
	prev := PacketRef{int32(hdr[0]), int64(hdr[1])}
	k, k1 := uint(b[0]), uint(b[1])
	r := bitReader{b: b[2:]}
	all := arena[:0]
	for i := 0; i < flowBlock; i++ {
		tb.tails[i] = tailOf{}
		if rb.present&(1<<i) == 0 {
			continue
		}
		chunks, n := tailSplit(rb.flows[i].Packets)
		tb.tails[i].chunks = chunks
		if n == 0 {
			continue
		}
		if n > uint64(len(b))*8 {
			return all, bad()
		}
		start := len(all)
		c, idx := int64(prev.Capture), prev.Index
		switch x := r.gamma(); x {
		case 1:
			idx += int64(r.rice(k1))
		case 2:
			idx -= int64(r.gamma())
		default:
			c += unzigzag(x - 2)
			idx = int64(r.gamma() - 1)
		}
		if r.bad || c < 0 || c > 1<<31-1 || idx < 0 || idx > 1<<62 {
			return all, bad()
		}
		prev = PacketRef{int32(c), idx}
		all = append(all, prev)
		kf := k
		if n > ownKMin && r.read(1) == 1 {
			kf = uint(r.read(5))
		}
		var err error
		if all, err = readSteps(&r, all, int(n), kf); err != nil {
			return all, err
		}
		tb.tails[i].refs = all[start:len(all):len(all)]
	}
	return all, nil
}
