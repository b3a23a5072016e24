package inflate

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// ErrHeader means the bytes are not a gzip member where one must start.
var ErrHeader = errors.New("bad gzip header")

// ErrChecksum means a member's trailer does not match its data.
var ErrChecksum = errors.New("gzip checksum mismatch")

// Checkpoint is a place a gzip file can be decompressed from: the start
// of a member (Member, no window needed) or of a DEFLATE block inside
// one, with the 32 KiB of output before it.
type Checkpoint struct {
	In     int64 // bit offset in the file (a multiple of 8 for a member)
	Out    int64 // offset in the decompressed data
	Member bool
	Window []byte
}

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

	every int64
	last  int64
	onCk  func(Checkpoint)
}

// NewGzipReader reads the gzip file r from its start.
func NewGzipReader(r io.Reader) (*GzipReader, error) {
	z := &GzipReader{d: NewDecoder(r)}
	if err := z.header(); err != nil {
		return nil, err
	}
	return z, nil
}

// Checkpoints makes z call fn at block and member starts at least every
// bytes of output apart (the first one past every bytes in). A member
// start needs no window, so a block start is taken only once it is a
// quarter more than every past the last checkpoint: files of many small
// members (bgzip's 64 KiB) get member starts only. The checkpoint's
// Window is valid only during the call.
func (z *GzipReader) Checkpoints(every int64, fn func(Checkpoint)) {
	z.every, z.onCk, z.last = every, fn, 0
	z.d.OnBlock = func(p Pos, window []byte) {
		if p.Out-z.last >= z.every+z.every/4 && len(window) > 0 {
			z.last = p.Out
			z.onCk(Checkpoint{In: p.In, Out: p.Out, Window: window})
		}
	}
}

// ResumeGzip reads a gzip file from checkpoint c: r reads the file from
// byte c.In/8 on.
func ResumeGzip(r io.Reader, c Checkpoint) (*GzipReader, error) {
	if c.Member || c.In == 0 {
		z := &GzipReader{d: NewDecoder(r)}
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
	return &GzipReader{d: d, resumed: true}, nil
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
			}
			break
		}
		if z.onCk != nil && z.d.outPos-z.last >= z.every {
			z.last = z.d.outPos
			z.onCk(Checkpoint{In: z.d.InPos(), Out: z.d.outPos, Member: true})
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
// decompressing from the checkpoint before it; reads just past the
// previous one continue where it stopped. Its methods may be called
// concurrently but take turns.
type ReaderAt struct {
	mu    sync.Mutex
	ra    io.ReaderAt
	size  int64
	find  func(off int64) (Checkpoint, error)
	ahead int64 // how far ahead of the current position reading on beats a checkpoint
	cur   *GzipReader
}

// NewReaderAt reads the gzip file ra of the given size. find returns the
// last checkpoint at or before a decompressed offset (the zero
// Checkpoint, the file's start, when there is none). ahead is about the
// checkpoint spacing.
func NewReaderAt(ra io.ReaderAt, size int64, find func(off int64) (Checkpoint, error), ahead int64) *ReaderAt {
	return &ReaderAt{ra: ra, size: size, find: find, ahead: ahead}
}

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || r.cur.err != nil || off < r.cur.Offset() || off-r.cur.Offset() > r.ahead {
		c, err := r.find(off)
		if err != nil {
			return 0, err
		}
		if c.Out > off || c.In/8 > r.size {
			return 0, fmt.Errorf("checkpoint at %d for offset %d: %w", c.Out, off, ErrCorrupt)
		}
		if r.cur == nil || r.cur.err != nil || c.Out > r.cur.Offset() || off < r.cur.Offset() {
			z, err := ResumeGzip(io.NewSectionReader(r.ra, c.In/8, r.size-c.In/8), c)
			if err != nil {
				return 0, err
			}
			r.cur = z
		}
	}
	if skip := off - r.cur.Offset(); skip > 0 {
		if _, err := io.CopyN(io.Discard, r.cur, skip); err != nil {
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, err
		}
	}
	n, err := io.ReadFull(r.cur, p)
	if err == io.ErrUnexpectedEOF && r.cur.err == io.EOF {
		err = io.EOF
	}
	return n, err
}
