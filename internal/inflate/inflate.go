// Package inflate decompresses DEFLATE (RFC 1951) and gzip (RFC 1952)
// streams and can resume decompression in the middle of one, as zlib's
// zran example does: at the start of any DEFLATE block the decoder's
// whole state is the bit position in the compressed stream and the last
// 32 KiB of output (the window later matches may refer to). A reader
// reports those block starts while it decompresses; an index keeps some
// of them as checkpoints, and Resume starts a decoder at one.
//
// Go's compress/flate cannot start at a bit offset with a preset window,
// which is why this package exists. Its output is checked against
// compress/flate by FuzzInflate.
package inflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// WindowSize is the most output a DEFLATE match can refer back to.
const WindowSize = 32 << 10

// ErrCorrupt is wrapped by every error about the compressed data itself.
var ErrCorrupt = errors.New("corrupt deflate data")

const (
	maxMatch   = 258
	histChunk  = 256 << 10 // output decoded per refill, beyond the window
	inBuf      = 64 << 10
	litBits    = 10 // first-level table bits of the literal/length code
	distBits   = 8  // and of the distance code
	maxCodeLen = 15
)

// Decoder decompresses a raw DEFLATE stream. It is an io.Reader; Read
// returns io.EOF after the final block (the bytes after it stay unread
// in the decoder's buffer: see Rest). Errors are sticky.
type Decoder struct {
	src    io.Reader
	buf    []byte // compressed input; buf[ip:iw] not yet in the bit buffer
	ip, iw int
	inBase int64 // stream offset of buf[0]
	origin int64 // bit offset in the file of the stream's first byte
	srcEOF bool
	bits   uint64 // bit buffer, least significant bit first
	nb     uint   // valid bits in it

	hist   []byte // output: hist[:wp] is valid, hist[rp:wp] not yet read
	rp, wp int
	outPos int64 // stream output offset of hist[wp]

	// Block state.
	inBlock  bool
	final    bool     // the current block is the last
	done     bool     // the final block ended
	stored   int      // bytes left of a stored block, -1 in a Huffman block
	floor    int      // hist[:floor] is output of an earlier gzip member, out of reach
	lit      *huffman // the current block's codes: fixed or dyn
	dist     *huffman
	dynLit   huffman
	dynDist  huffman
	fixedLit *huffman // the fixed codes, built once per decoder
	fixedDst *huffman

	// OnBlock, if set, is called at the start of every block: Pos is
	// where it starts, final whether it is the stream's last, window the
	// output before it that matches may reach (up to WindowSize bytes).
	// window is valid only during the call.
	OnBlock func(p Pos, final bool, window []byte)

	err error
}

// Pos is a point in a DEFLATE stream at which a block starts.
type Pos struct {
	In  int64 // bit offset in the compressed stream
	Out int64 // offset in the decompressed output
}

// NewDecoder decompresses the DEFLATE stream read from r.
func NewDecoder(r io.Reader) *Decoder {
	d := &Decoder{src: r, buf: make([]byte, inBuf), hist: make([]byte, WindowSize+histChunk+maxMatch), stored: -1}
	return d
}

// Resume decompresses a DEFLATE stream from the block that starts skip
// bits (0-7) into the first byte r reads, where window is the output
// that came before it (at most WindowSize bytes are used) and at is the
// output offset of the block's first byte. In is counted from r's first
// byte.
func Resume(r io.Reader, skip uint, window []byte, at int64) (*Decoder, error) {
	d := NewDecoder(r)
	if len(window) > WindowSize {
		window = window[len(window)-WindowSize:]
	}
	d.wp = copy(d.hist, window)
	d.rp = d.wp
	d.outPos = at
	if skip > 0 {
		if err := d.need(skip); err != nil {
			return nil, err
		}
		d.drop(skip)
	}
	return d, nil
}

// InPos is the bit offset of the next compressed bit, counted from the
// start of the file (see SetOrigin).
func (d *Decoder) InPos() int64 { return d.origin + (d.inBase+int64(d.ip))*8 - int64(d.nb) }

// SetOrigin says that the reader's first byte is byte off of the file,
// for InPos and error messages.
func (d *Decoder) SetOrigin(off int64) { d.origin = off * 8 }

// OutPos is the output offset of the next byte Read returns.
func (d *Decoder) OutPos() int64 { return d.outPos - int64(d.wp-d.rp) }

// Err is the sticky error, if any (io.EOF after the final block).
func (d *Decoder) Err() error { return d.err }

func (d *Decoder) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w at file byte %d: %s", ErrCorrupt, d.InPos()/8, fmt.Sprintf(format, args...))
}

// Read implements io.Reader.
func (d *Decoder) Read(p []byte) (int, error) {
	for d.rp == d.wp {
		if d.err != nil {
			return 0, d.err
		}
		d.err = d.fill()
	}
	n := copy(p, d.hist[d.rp:d.wp])
	d.rp += n
	return n, nil
}

// fill decodes more output into hist (at least one byte, or an error).
func (d *Decoder) fill() error {
	if d.done {
		return io.EOF
	}
	// Keep the window, make room for a chunk.
	if d.wp > WindowSize && len(d.hist)-d.wp < maxMatch+1024 {
		shift := d.wp - WindowSize
		copy(d.hist, d.hist[shift:d.wp])
		d.rp -= shift
		d.wp -= shift
		d.floor = max(0, d.floor-shift)
	}
	start := d.wp
	for d.wp == start || (len(d.hist)-d.wp >= maxMatch && d.wp-start < histChunk/2) {
		if !d.inBlock {
			if d.final {
				d.done = true
				break
			}
			if err := d.header(); err != nil {
				return err
			}
			continue
		}
		var err error
		if d.stored >= 0 {
			err = d.copyStored()
		} else {
			err = d.huffBlock()
		}
		if err != nil {
			return err
		}
	}
	if d.wp == start {
		return io.EOF
	}
	return nil
}

// header reads a block header.
func (d *Decoder) header() error {
	at := Pos{d.InPos(), d.outPos}
	if err := d.need(3); err != nil {
		return err
	}
	h := d.take(3)
	d.final = h&1 == 1
	d.inBlock = true
	if d.OnBlock != nil {
		lo := max(d.floor, d.wp-WindowSize)
		d.OnBlock(at, d.final, d.hist[lo:d.wp])
	}
	switch h >> 1 {
	case 0: // stored
		d.drop(d.nb % 8)
		if err := d.need(32); err != nil {
			return err
		}
		n, nn := d.take(16), d.take(16)
		if n != ^nn&0xffff {
			return d.corrupt("stored block length %04x does not match its complement %04x", n, nn)
		}
		d.stored = int(n)
	case 1:
		if d.fixedLit == nil {
			d.fixedLit, d.fixedDst = new(huffman), new(huffman)
			var l [288 + 32]uint8
			for i := range 288 {
				switch {
				case i < 144:
					l[i] = 8
				case i < 256:
					l[i] = 9
				case i < 280:
					l[i] = 7
				default:
					l[i] = 8
				}
			}
			for i := range 32 {
				l[288+i] = 5
			}
			d.fixedLit.build(l[:288], litBits)
			d.fixedDst.build(l[288:], distBits)
		}
		d.lit, d.dist = d.fixedLit, d.fixedDst
		d.stored = -1
	case 2:
		if err := d.dynamic(); err != nil {
			return err
		}
		d.stored = -1
	default:
		return d.corrupt("block type 3")
	}
	return nil
}

// codeOrder is the order of the code length code's lengths.
var codeOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// dynamic reads the code tables of a dynamic Huffman block.
func (d *Decoder) dynamic() error {
	if err := d.need(14); err != nil {
		return err
	}
	nlit := int(d.take(5)) + 257
	ndist := int(d.take(5)) + 1
	nclen := int(d.take(4)) + 4
	if nlit > 286 || ndist > 30 {
		return d.corrupt("%d literal/length and %d distance codes", nlit, ndist)
	}
	var cl [19]uint8
	for i := range nclen {
		if err := d.need(3); err != nil {
			return err
		}
		cl[codeOrder[i]] = uint8(d.take(3))
	}
	var clh huffman
	if !clh.build(cl[:], 7) {
		return d.corrupt("bad code length code")
	}
	var lens [286 + 30]uint8
	for i := 0; i < nlit+ndist; {
		sym, err := d.symbol(&clh)
		if err != nil {
			return err
		}
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return d.corrupt("repeat of no previous length")
			}
			if err := d.need(2); err != nil {
				return err
			}
			rep, val = 3+int(d.take(2)), lens[i-1]
		case 17:
			if err := d.need(3); err != nil {
				return err
			}
			rep = 3 + int(d.take(3))
		default:
			if err := d.need(7); err != nil {
				return err
			}
			rep = 11 + int(d.take(7))
		}
		if i+rep > nlit+ndist {
			return d.corrupt("code lengths repeat past the end")
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return d.corrupt("no end-of-block code")
	}
	d.lit, d.dist = &d.dynLit, &d.dynDist
	if !d.lit.build(lens[:nlit], litBits) || !d.dist.build(lens[nlit:nlit+ndist], distBits) {
		return d.corrupt("over-subscribed or incomplete Huffman code")
	}
	return nil
}

func (d *Decoder) copyStored() error {
	if d.stored == 0 {
		d.inBlock = false
		return nil
	}
	// Whole bytes left in the bit buffer come first.
	for d.nb >= 8 && d.stored > 0 && d.wp < len(d.hist) {
		d.hist[d.wp] = byte(d.bits)
		d.bits >>= 8
		d.nb -= 8
		d.wp++
		d.outPos++
		d.stored--
	}
	if d.nb == 0 {
		d.bits = 0 // the bytes below bypass the bit buffer; drop its look-ahead
	}
	for d.stored > 0 && d.wp < len(d.hist) && d.nb == 0 {
		if d.ip == d.iw {
			if err := d.read(); err != nil {
				return err
			}
			continue
		}
		n := copy(d.hist[d.wp:min(len(d.hist), d.wp+d.stored)], d.buf[d.ip:d.iw])
		d.ip += n
		d.wp += n
		d.outPos += int64(n)
		d.stored -= n
	}
	if d.stored == 0 {
		d.inBlock = false
	}
	return nil
}

var lenBase = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
var lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
var distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
var distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

// huffBlock decodes symbols until the block ends or hist has no room
// for another match.
func (d *Decoder) huffBlock() error {
	hist := d.hist
	wp := d.wp
	defer func() { d.outPos += int64(wp - d.wp); d.wp = wp }()
	for len(hist)-wp >= maxMatch {
		if len(hist)-wp >= maxMatch+8 && d.iw-d.ip >= fastIn {
			d.outPos += int64(wp - d.wp)
			d.wp = wp
			ended := d.fast()
			wp = d.wp
			if ended {
				return nil
			}
			if len(hist)-wp < maxMatch {
				break
			}
		}
		sym, err := d.symbol(d.lit)
		if err != nil {
			return err
		}
		if sym < 256 {
			hist[wp] = byte(sym)
			wp++
			continue
		}
		if sym == 256 {
			d.inBlock = false
			return nil
		}
		sym -= 257
		if sym >= 29 {
			return d.corrupt("literal/length symbol %d", sym+257)
		}
		// Length extra bits (at most 5), distance code (at most 15) and
		// its extra bits (at most 13): 33 bits, one refill.
		if d.nb < 33 {
			if err := d.need(33); err != nil && d.nb < uint(lenExtra[sym]) {
				return err
			}
		}
		n := int(lenBase[sym]) + int(d.take(uint(lenExtra[sym])))
		ds, err := d.symbol(d.dist)
		if err != nil {
			return err
		}
		if ds >= 30 {
			return d.corrupt("distance symbol %d", ds)
		}
		if e := uint(distExtra[ds]); d.nb < e {
			if err := d.need(e); err != nil {
				return err
			}
		}
		dist := int(distBase[ds]) + int(d.take(uint(distExtra[ds])))
		if dist > wp-d.floor {
			return d.corrupt("distance %d reaches before the start of the output", dist)
		}
		from := wp - dist
		if dist >= n {
			copy(hist[wp:wp+n], hist[from:from+n])
			wp += n
		} else {
			for end := wp + n; wp < end; {
				wp += copy(hist[wp:end], hist[from:wp])
			}
		}
	}
	return nil
}

// fastIn is the compressed input fast needs in the buffer for a symbol:
// a refill reads 8 bytes and a length and distance with their extra
// bits take at most 48 bits, which one refill to 56 or more bits holds.
const fastIn = 16

// fast is huffBlock's loop for when the input buffer holds at least
// fastIn bytes and hist has room for a match and a word beyond: the bit
// buffer is refilled once a symbol without a check, the state is in
// locals, and a match farther back than a word is copied a word at a
// time (overrunning its end into free space). It reports whether the
// block ended. Anything it does not expect (an invalid code, a distance
// out of reach) it leaves, undecoded, to huffBlock's careful loop, which
// reports it.
func (d *Decoder) fast() bool {
	hist := d.hist
	buf := d.buf[:d.iw]
	bits, nb, ip, wp := d.bits, d.nb, d.ip, d.wp
	lit, dst := d.lit.table, d.dist.table
	lb, db := d.lit.bits, d.dist.bits
	lmask, dmask := uint64(1)<<lb-1, uint64(1)<<db-1
	floor := d.floor
	ended := false
	for len(hist)-wp >= maxMatch+8 && len(buf)-ip >= fastIn {
		bits |= le64(buf[ip:]) << nb
		ip += int(63-nb) >> 3
		nb |= 56
		// Undo point: the symbol starts here.
		sbits, snb := bits, nb
		e := lit[bits&lmask]
		n := uint(e & 0xff)
		if e&linkFlag != 0 {
			e = lit[int(e>>16)+int(bits>>lb)&(1<<n-1)]
			if e&0xff == 0 {
				break
			}
			n = uint(e&0xff) + lb
		} else if n == 0 {
			break
		}
		bits >>= n
		nb -= n
		sym := int(e >> 16)
		if sym < 256 {
			hist[wp] = byte(sym)
			wp++
			continue
		}
		if sym == 256 {
			ended = true
			break
		}
		sym -= 257
		if sym >= 29 {
			bits, nb = sbits, snb
			break
		}
		x := uint(lenExtra[sym])
		length := int(lenBase[sym]) + int(bits&(1<<x-1))
		bits >>= x
		nb -= x
		e = dst[bits&dmask]
		n = uint(e & 0xff)
		if e&linkFlag != 0 {
			e = dst[int(e>>16)+int(bits>>db)&(1<<n-1)]
			if e&0xff == 0 {
				bits, nb = sbits, snb
				break
			}
			n = uint(e&0xff) + db
		} else if n == 0 {
			bits, nb = sbits, snb
			break
		}
		ds := int(e >> 16)
		if ds >= 30 {
			bits, nb = sbits, snb
			break
		}
		bits >>= n
		nb -= n
		x = uint(distExtra[ds])
		dist := int(distBase[ds]) + int(bits&(1<<x-1))
		if dist > wp-floor {
			bits, nb = sbits, snb
			break
		}
		bits >>= x
		nb -= x
		from := wp - dist
		if dist >= 8 {
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(hist[wp+i:], binary.LittleEndian.Uint64(hist[from+i:]))
			}
		} else {
			// A run of period dist: its first word byte by byte, then
			// that word at every multiple of dist up to a word apart.
			for i := range 8 {
				hist[wp+i] = hist[from+i]
			}
			pat := binary.LittleEndian.Uint64(hist[wp:])
			step := 8 / dist * dist
			for i := step; i < length; i += step {
				binary.LittleEndian.PutUint64(hist[wp+i:], pat)
			}
		}
		wp += length
	}
	d.outPos += int64(wp - d.wp)
	d.bits, d.nb, d.ip, d.wp = bits, nb, ip, wp
	if ended {
		d.inBlock = false
	}
	return ended
}

// huffman is a canonical Huffman code as lookup tables: the first
// level is indexed by the next bits of the stream; an entry is
//
//	sym<<16 | link<<8 | len    (len 0: no code has these bits)
//
// where a link entry's sym is the offset of a second-level table
// indexed by the following len bits.
type huffman struct {
	bits  uint
	table []uint32
	space [1 << 11]uint32 // backing store for small codes (most blocks)
}

const linkFlag = 1 << 8

// build makes the tables for code lengths lens (0: unused symbol). It
// reports whether the code is valid: complete, or a single code of one
// bit, or no code at all (an unused distance code, which fails when used).
func (h *huffman) build(lens []uint8, first uint) bool {
	var count [maxCodeLen + 1]int
	maxLen := 0
	for _, l := range lens {
		count[l]++
		maxLen = max(maxLen, int(l))
	}
	count[0] = 0
	h.bits = first
	size := 1 << first
	h.table = h.space[:size]
	clear(h.table)
	if maxLen == 0 {
		return true
	}
	var next [maxCodeLen + 2]int
	code := 0
	for l := 1; l <= maxCodeLen; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	left := 1
	for l := 1; l <= maxCodeLen; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return false // over-subscribed
		}
	}
	if left > 0 && !(maxLen == 1 && count[1] == 1) {
		return false // incomplete
	}
	// Second-level tables: for each first-level prefix, the longest
	// code that starts with it.
	var sub [1 << litBits]uint8
	mask := 1<<first - 1
	if maxLen > int(first) {
		nc := next
		for _, l := range lens {
			if int(l) > int(first) {
				r := int(bits.Reverse16(uint16(nc[l])) >> (16 - l))
				nc[l]++
				p := r & mask
				sub[p] = max(sub[p], l-uint8(first))
			}
		}
		for p := 0; p <= mask; p++ {
			if sub[p] > 0 {
				size += 1 << sub[p]
			}
		}
		if size > len(h.space) {
			h.table = make([]uint32, size)
		} else {
			h.table = h.space[:size]
			clear(h.table)
		}
		off := 1 << first
		for p := 0; p <= mask; p++ {
			if sub[p] > 0 {
				h.table[p] = uint32(off)<<16 | linkFlag | uint32(sub[p])
				off += 1 << sub[p]
			}
		}
	}
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		r := int(bits.Reverse16(uint16(next[l])) >> (16 - l))
		next[l]++
		if int(l) <= int(first) {
			for i := r; i <= mask; i += 1 << l {
				h.table[i] = uint32(sym)<<16 | uint32(l)
			}
			continue
		}
		link := h.table[r&mask]
		base, sb := int(link>>16), uint(link&0xff)
		rest := uint(l) - first
		for i := r >> first; i < 1<<sb; i += 1 << rest {
			h.table[base+i] = uint32(sym)<<16 | uint32(rest)
		}
	}
	return true
}

// symbol decodes one symbol of code h.
func (d *Decoder) symbol(h *huffman) (int, error) {
	if d.nb < maxCodeLen {
		if err := d.need(maxCodeLen); err != nil && d.nb == 0 {
			return 0, err
		}
	}
	e := h.table[d.bits&(1<<h.bits-1)]
	n := uint(e & 0xff)
	if e&linkFlag != 0 {
		e = h.table[int(e>>16)+int(d.bits>>h.bits)&(1<<n-1)]
		if e&0xff == 0 {
			n = 0
		} else {
			n = uint(e&0xff) + h.bits
		}
	}
	if n == 0 || n > d.nb {
		if d.nb < maxCodeLen && d.srcEOF && d.ip == d.iw {
			return 0, d.eofError() // the stream ends inside the code
		}
		return 0, d.corrupt("bits that are no Huffman code")
	}
	d.bits >>= n
	d.nb -= n
	return int(e >> 16), nil
}

func (d *Decoder) eofError() error {
	return fmt.Errorf("%w: the compressed stream ends inside a block (file byte %d)", io.ErrUnexpectedEOF, d.InPos()/8)
}

// need makes at least n bits (n <= 57) available, or fails at the end of
// the input.
func (d *Decoder) need(n uint) error {
	for d.nb < n {
		if d.iw-d.ip >= 8 {
			d.bits |= le64(d.buf[d.ip:]) << d.nb
			d.ip += int(63-d.nb) >> 3
			d.nb |= 56
			continue
		}
		if d.ip < d.iw {
			d.bits |= uint64(d.buf[d.ip]) << d.nb
			d.ip++
			d.nb += 8
			continue
		}
		if err := d.read(); err != nil {
			return err
		}
	}
	return nil
}

// read refills buf; it keeps nothing already moved to the bit buffer.
func (d *Decoder) read() error {
	if d.srcEOF {
		return d.eofError()
	}
	d.inBase += int64(d.ip)
	n := copy(d.buf, d.buf[d.ip:d.iw])
	d.ip, d.iw = 0, n
	for d.iw < len(d.buf) {
		m, err := d.src.Read(d.buf[d.iw:])
		d.iw += m
		if err == io.EOF {
			d.srcEOF = true
			break
		}
		if err != nil {
			return err
		}
		if m > 0 {
			break
		}
	}
	if d.iw == 0 && d.srcEOF {
		return d.eofError()
	}
	return nil
}

func (d *Decoder) take(n uint) uint32 {
	v := uint32(d.bits & (1<<n - 1))
	d.bits >>= n
	d.nb -= n
	return v
}

func (d *Decoder) drop(n uint) { d.bits >>= n; d.nb -= n }

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
