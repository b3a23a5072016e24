package inflate

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/pcapflow/pcapflow/internal/window"
)

// ErrHeader means the bytes are not a gzip member where one must start.
var ErrHeader = errors.New("bad gzip header")

// ErrChecksum means a member's trailer does not match its data.
var ErrChecksum = errors.New("gzip checksum mismatch")

// Checkpoint is a place a gzip file can be decompressed from: the start
// of a member (Member, no window needed) or of a DEFLATE block inside
// one, with the 32 KiB of output before it. Len and Sums let a reader
// that starts there check what it decompresses, since it cannot check
// the member's CRC-32 (it did not see the member's start): Sums are the
// CRC-32 of each SumEvery bytes of the Len bytes up to the next
// checkpoint (the last one may be shorter).
type Checkpoint struct {
	In     int64 // bit offset in the file (a multiple of 8 for a member)
	Out    int64 // offset in the decompressed data
	Member bool
	Window []byte
	Len    int64
	Sums   []uint32
}

// SumEvery is the span of decompressed data one checkpoint sum covers.
const SumEvery = 64 << 10

// maxEarlySums is how much output (in sums) a reader sums before
// Checkpoints is called, and stops summing without.
const maxEarlySums = 64

// GzipReader reads the decompressed data of a gzip file, one member
// after another (tcpdump -z and gzip write one; bgzip and concatenated
// files have many), checking each member's CRC-32 and length. Errors
// are sticky; io.EOF follows the last member.
type GzipReader struct {
	d       *Decoder
	crc     uint32
	size    uint32
	resumed bool // started inside the current member: its checksum is unknown
	err     error

	every   int64
	onCk    func(Checkpoint)
	pending Checkpoint   // the last checkpoint, waiting for its sums
	queue   []Checkpoint // block starts the decoder passed that Read has not reached
	sum     uint32       // CRC-32 of the current SumEvery span so far
	sumLeft int          // bytes left in it
	noSums  bool         // Checkpoints was not called early enough: stop summing
}

// NewGzipReader reads the gzip file r from its start.
func NewGzipReader(r io.Reader) (*GzipReader, error) {
	z := &GzipReader{d: NewDecoder(r), pending: Checkpoint{Member: true}, sumLeft: SumEvery}
	if err := z.header(); err != nil {
		return nil, err
	}
	return z, nil
}

// Checkpoints makes z call fn with a checkpoint at the file's start and
// then at block and member starts at least every bytes of output apart.
// A member start needs no window, so a block start is taken only once
// it is a quarter more than every past the last checkpoint: files of
// many small members (bgzip's 64 KiB) get member starts only. Each
// checkpoint is passed once its Sums are known, when the next one is
// taken or at the end of the file. Call it before the first 4 MiB of
// output are read.
func (z *GzipReader) Checkpoints(every int64, fn func(Checkpoint)) {
	z.every, z.onCk = every, fn
	z.d.OnBlock = func(p Pos, final bool, window []byte) {
		// A member's final block is often empty (compress/flate's Close
		// writes one): its start is the member's end, where the next
		// member's start is a checkpoint that needs no window.
		last := z.pending.Out
		if len(z.queue) > 0 {
			last = z.queue[len(z.queue)-1].Out
		}
		if !final && p.Out-last >= z.every+z.every/4 && len(window) > 0 {
			// The decoder runs ahead of Read: the checkpoint is taken
			// when the output Read returns reaches it.
			z.queue = append(z.queue, Checkpoint{In: p.In, Out: p.Out, Window: bytes.Clone(window)})
		}
	}
}

// checkpoint passes the pending checkpoint on and makes c pending.
func (z *GzipReader) checkpoint(c Checkpoint) {
	if z.onCk != nil && !z.noSums {
		if z.sumLeft < SumEvery {
			z.pending.Sums = append(z.pending.Sums, z.sum)
		}
		z.pending.Len = c.Out - z.pending.Out
		z.onCk(z.pending)
	}
	z.pending, z.sum, z.sumLeft = c, 0, SumEvery
}

// addSums adds output to the pending checkpoint's sums.
func (z *GzipReader) addSums(p []byte) {
	for len(p) > 0 {
		n := min(len(p), z.sumLeft)
		z.sum = crc32.Update(z.sum, crc32.IEEETable, p[:n])
		z.sumLeft -= n
		p = p[n:]
		if z.sumLeft == 0 {
			z.pending.Sums = append(z.pending.Sums, z.sum)
			z.sum, z.sumLeft = 0, SumEvery
			if z.onCk == nil && len(z.pending.Sums) >= maxEarlySums {
				z.noSums = true // nobody asked for checkpoints
			}
		}
	}
}

// ResumeGzip reads a gzip file from checkpoint c: r reads the file from
// byte c.In/8 on.
func ResumeGzip(r io.Reader, c Checkpoint) (*GzipReader, error) {
	if c.Member || c.In == 0 {
		z := &GzipReader{d: NewDecoder(r), noSums: true}
		z.d.SetOrigin(c.In / 8)
		z.d.outPos = c.Out
		if err := z.header(); err != nil {
			return nil, err
		}
		return z, nil
	}
	d, err := Resume(r, uint(c.In%8), c.Window, c.Out)
	if err != nil {
		return nil, err
	}
	d.SetOrigin(c.In / 8)
	return &GzipReader{d: d, resumed: true, noSums: true}, nil
}

// Offset is the decompressed offset of the next byte Read returns.
func (z *GzipReader) Offset() int64 { return z.d.OutPos() }

// InOffset is the file offset of the compressed byte being decoded.
func (z *GzipReader) InOffset() int64 { return z.d.InPos() / 8 }

// Read implements io.Reader.
func (z *GzipReader) Read(p []byte) (int, error) {
	for z.err == nil {
		n, err := z.d.Read(p)
		if n > 0 {
			if !z.resumed {
				z.crc = crc32.Update(z.crc, crc32.IEEETable, p[:n])
			}
			z.size += uint32(n)
			if !z.noSums && !z.resumed {
				at := z.d.OutPos() - int64(n)
				for q := p[:n]; ; {
					if len(z.queue) == 0 || z.queue[0].Out >= at+int64(len(q)) {
						z.addSums(q)
						break
					}
					k := z.queue[0].Out - at
					z.addSums(q[:k])
					z.checkpoint(z.queue[0])
					z.queue = z.queue[1:]
					q, at = q[k:], at+k
				}
			}
			return n, nil
		}
		if err != io.EOF {
			z.err = err
			break
		}
		if err := z.trailer(); err != nil {
			z.err = err
			break
		}
		if more, err := z.d.more(); err != nil || !more {
			z.err = io.EOF
			if err != nil {
				z.err = err
			} else if !z.resumed {
				z.checkpoint(Checkpoint{Out: z.d.outPos}) // the last one's sums are complete
			}
			break
		}
		if z.onCk != nil && z.d.outPos-z.pending.Out >= z.every {
			z.checkpoint(Checkpoint{In: z.d.InPos(), Out: z.d.outPos, Member: true})
		}
		if err := z.header(); err != nil {
			z.err = err
		}
	}
	return 0, z.err
}

// header reads a member's header and starts its DEFLATE stream.
func (z *GzipReader) header() error {
	d := z.d
	at := z.InOffset()
	var h [10]byte
	for i := range h {
		b, err := d.byteAligned()
		if err != nil {
			return fmt.Errorf("%w at file byte %d: %v", ErrHeader, at, err)
		}
		h[i] = b
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3]&0xe0 != 0 {
		return fmt.Errorf("%w at file byte %d: % x", ErrHeader, at, h[:4])
	}
	flg := h[3]
	skip := func(n int) error {
		for range n {
			if _, err := d.byteAligned(); err != nil {
				return err
			}
		}
		return nil
	}
	zero := func() error {
		for {
			b, err := d.byteAligned()
			if err != nil || b == 0 {
				return err
			}
		}
	}
	var err error
	if flg&4 != 0 { // FEXTRA
		var lo, hi byte
		if lo, err = d.byteAligned(); err == nil {
			if hi, err = d.byteAligned(); err == nil {
				err = skip(int(lo) | int(hi)<<8)
			}
		}
	}
	if err == nil && flg&8 != 0 { // FNAME
		err = zero()
	}
	if err == nil && flg&16 != 0 { // FCOMMENT
		err = zero()
	}
	if err == nil && flg&2 != 0 { // FHCRC
		err = skip(2)
	}
	if err != nil {
		return fmt.Errorf("%w at file byte %d: %v", ErrHeader, at, err)
	}
	d.startStream()
	z.crc, z.size, z.resumed = 0, 0, false
	return nil
}

// trailer reads and checks a member's CRC-32 and length.
func (z *GzipReader) trailer() error {
	at := z.InOffset()
	var t [8]byte
	for i := range t {
		b, err := z.d.byteAligned()
		if err != nil {
			return fmt.Errorf("%w: the gzip trailer at file byte %d is cut short", io.ErrUnexpectedEOF, at)
		}
		t[i] = b
	}
	crc := uint32(t[0]) | uint32(t[1])<<8 | uint32(t[2])<<16 | uint32(t[3])<<24
	size := uint32(t[4]) | uint32(t[5])<<8 | uint32(t[6])<<16 | uint32(t[7])<<24
	if !z.resumed && (crc != z.crc || size != z.size) {
		return fmt.Errorf("%w in the member ending at file byte %d", ErrChecksum, at+8)
	}
	return nil
}

// byteAligned reads the next whole byte after the current one.
func (d *Decoder) byteAligned() (byte, error) {
	d.drop(d.nb % 8)
	if d.nb >= 8 {
		return byte(d.take(8)), nil
	}
	d.bits = 0
	if d.ip == d.iw {
		if err := d.read(); err != nil {
			return 0, err
		}
	}
	b := d.buf[d.ip]
	d.ip++
	return b, nil
}

// more reports whether input follows what has been consumed.
func (d *Decoder) more() (bool, error) {
	d.drop(d.nb % 8)
	if d.nb > 0 || d.ip < d.iw {
		return true, nil
	}
	if d.srcEOF {
		return false, nil
	}
	err := d.read()
	if d.ip < d.iw {
		return true, nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil // read's way of saying the input ended
	}
	return false, err
}

// startStream begins a new DEFLATE stream (a gzip member's) in the same
// decoder: earlier output is out of reach of its matches.
func (d *Decoder) startStream() {
	d.inBlock, d.final, d.done, d.err = false, false, false, nil
	d.floor = d.wp
}

// ReaderAt reads a gzip file's decompressed bytes at any offset by
// decompressing from the checkpoint before it, SumEvery bytes at a
// time, each checked against the checkpoint's sums before it is
// returned; reads at or just past the previous one go on where it
// stopped. Its methods may be called concurrently but take turns.
type ReaderAt struct {
	mu    sync.Mutex
	ra    io.ReaderAt
	size  int64
	find  func(off int64) (Checkpoint, error)
	ahead int64 // how far ahead of the current position reading on beats a checkpoint
	cur   *GzipReader
	ck    Checkpoint    // the checkpoint cur decompresses the span of
	span  int           // the next span of ck that cur returns
	win   window.Window // span span-1 (verified)
}

// NewReaderAt reads the gzip file ra of the given size. find returns the
// last checkpoint at or before a decompressed offset (the zero
// Checkpoint, the file's start, when there is none). ahead is about the
// checkpoint spacing.
func NewReaderAt(ra io.ReaderAt, size int64, find func(off int64) (Checkpoint, error), ahead int64) *ReaderAt {
	return &ReaderAt{ra: ra, size: size, find: find, ahead: ahead, win: window.Window{Buf: make([]byte, 0, SumEvery)}}
}

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.win.ReadAt(p, off, r.next)
}

// next makes buf hold the verified span that holds offset at.
func (r *ReaderAt) next(at int64) error {
	pos := r.win.End() // where cur stands
	if r.cur == nil || at < pos || at-pos > r.ahead {
		c, err := r.find(at)
		if err != nil {
			return err
		}
		if c.Out > at || c.In/8 > r.size {
			return fmt.Errorf("%w: the checkpoint for decompressed offset %d lies at %d", ErrCorrupt, at, c.Out)
		}
		if r.cur == nil || c.Out > pos || at < pos {
			if err := r.start(c); err != nil {
				return err
			}
		}
	}
	for {
		if err := r.fill(); err != nil {
			return err
		}
		if at < r.win.End() {
			return nil
		}
	}
}

func (r *ReaderAt) start(c Checkpoint) error {
	z, err := ResumeGzip(io.NewSectionReader(r.ra, c.In/8, r.size-c.In/8), c)
	if err != nil {
		return err
	}
	r.cur, r.ck, r.span, r.win.Buf, r.win.At = z, c, 0, r.win.Buf[:0], c.Out
	return nil
}

// fill decompresses the next span into buf and checks it.
func (r *ReaderAt) fill() error {
	if r.ck.Sums != nil && r.span == len(r.ck.Sums) {
		// The checkpoint's spans are done: the next checkpoint's sums
		// go on (the decompressor just goes on).
		end := r.ck.Out + r.ck.Len
		c, err := r.find(end)
		if err != nil {
			return err
		}
		if c.Out < end {
			return io.EOF // the last checkpoint's span ends the data
		}
		if c.Out != end {
			return fmt.Errorf("%w: no checkpoint at decompressed offset %d after the one at %d", ErrCorrupt, end, r.ck.Out)
		}
		r.ck, r.span = c, 0
	}
	size := int64(SumEvery)
	if r.ck.Sums != nil && r.span == len(r.ck.Sums)-1 {
		size = r.ck.Len - int64(r.span)*SumEvery
	}
	r.win.At += int64(len(r.win.Buf))
	r.win.Buf = r.win.Buf[:size]
	m, err := io.ReadFull(r.cur, r.win.Buf)
	r.win.Buf = r.win.Buf[:m]
	if r.ck.Sums != nil {
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%w: the file ends inside decompressed bytes %d-%d, which it held when it was indexed", io.ErrUnexpectedEOF, r.win.At, r.win.At+size)
			}
			r.cur = nil
			return err
		}
		if crc32.ChecksumIEEE(r.win.Buf) != r.ck.Sums[r.span] {
			r.cur, r.win.Buf = nil, r.win.Buf[:0]
			return fmt.Errorf("%w: decompressed bytes %d-%d differ from when the file was indexed", ErrChecksum, r.win.At, r.win.At+size)
		}
	} else if m == 0 {
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return err
	}
	r.span++
	return nil
}
