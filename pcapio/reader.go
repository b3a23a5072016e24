package pcapio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/inflate"
)

// Magic numbers, as read little-endian from the first four bytes.
const (
	magicMicro     = 0xa1b2c3d4
	magicNano      = 0xa1b23c4d
	magicModified  = 0xa1b2cd34 // Alexey Kuznetzov's patched libpcap: 24-byte record headers
	magicNG        = 0x0a0d0d0a // pcapng section header block type
	byteOrderMagic = 0x1a2b3c4d
)

const (
	defaultBufSize = 1 << 20
	// plausibleCapLen is the largest captured length accepted for a pcap
	// record that also runs past the end of the file before it is called
	// corrupt rather than cut off (TSO/GRO frames reach 256 KiB).
	plausibleCapLen = 256 << 10
	// skipInPlace is the largest non-packet pcapng block read into the
	// buffer; bigger ones are discarded as they stream past.
	skipInPlace = 1 << 20
)

// Stats counts what a reader read and what it passed over.
type Stats struct {
	Records       int64 // packet records returned
	Bytes         int64 // bytes consumed from the (decompressed) input
	SkippedBlocks int64 // pcapng blocks of types that carry no packets we read
	SkippedBadIf  int64 // pcapng packet blocks naming an undefined interface
}

// Reader reads the records of a capture in file order. It is not safe for
// concurrent use.
type Reader struct {
	name       string
	src        io.Reader
	closeFn    func()
	size       int64 // size of the input when known, else -1
	compressed string
	gz         *inflate.GzipReader // a gzip capture's decompressor
	ckEvery    int64               // and its checkpoints (GzipCheckpoints)
	ckFn       func(GzipCheckpoint)
	ahead      *ahead // decompressing in its own goroutine (DecompressAhead)

	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	base int64 // stream offset of buf[0]
	eof  bool
	err  error // sticky error, returned by every later Next

	layout Layout
	scales []tsScale
	stats  Stats

	// Current pcap section.
	big    bool
	nanos  bool
	hdrLen int
	link   LinkType
	snap   uint32

	// Current pcapng section.
	sec    int
	lastTs int64

	// known is set when the layout was learnt before (RecordReader): a
	// section or interface block met is looked up, not added.
	known bool

	// OnWarning, when set, is called for problems the reader passes over
	// while it goes on reading (a packet block naming an undefined
	// interface). The error is an *Error naming the file and offset.
	OnWarning func(error)
}

// NewReader starts reading a capture from r. name is used in error
// messages. The input may be pcap or pcapng, optionally compressed with
// gzip or zstd (detected by magic). When r is a regular *os.File its size
// is used to tell a corrupt record length from a file cut short.
func NewReader(r io.Reader, name string) (*Reader, error) {
	return NewReaderBuffer(r, name, nil)
}

// NewReaderBuffer is NewReader reading through buf when it is at least
// 1 MiB (or the file's size), instead of allocating a buffer: a reader of
// many captures one after the other hands each the buffer of the last
// (Buffer), and its heap does not grow by a buffer per capture.
func NewReaderBuffer(r io.Reader, name string, buf []byte) (*Reader, error) {
	x := &Reader{name: name, src: r, size: -1}
	switch v := r.(type) {
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			x.size = fi.Size()
		}
	case interface{ Size() int64 }: // bytes.Reader, io.SectionReader
		x.size = v.Size()
	}
	bufSize := defaultBufSize
	if x.size >= 0 && x.size < int64(bufSize) {
		bufSize = max(int(x.size), 64) // small files and fuzz inputs
	}
	if cap(buf) >= bufSize {
		x.buf = buf[:cap(buf)]
	} else {
		x.buf = make([]byte, bufSize)
	}
	if err := x.fill(4); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, x.errorf(0, ErrUnknownFormat, "file is %d bytes long", x.w)
		}
		return nil, x.ioError(0, err)
	}
	head := x.buf[x.r:x.w]
	switch {
	case head[0] == 0x1f && head[1] == 0x8b:
		x.compressed = "gzip"
		// Our own inflater rather than compress/gzip: it reports the
		// block starts an index keeps to resume decompression at.
		zr, err := inflate.NewGzipReader(io.MultiReader(bytes.NewReader(append([]byte(nil), head...)), r))
		if err != nil {
			return nil, x.errorf(0, ErrUnknownFormat, "bad gzip header: %v", err)
		}
		x.gz = zr
		x.restart(zr, nil)
	case binary.LittleEndian.Uint32(head) == 0xfd2fb528:
		x.compressed = "zstd"
		zr, err := zstd.NewReader(io.MultiReader(bytes.NewReader(append([]byte(nil), head...)), r),
			zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, x.errorf(0, ErrUnknownFormat, "bad zstd header: %v", err)
		}
		x.restart(zr, zr.Close)
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X'}), bytes.HasPrefix(head, []byte("BZh")),
		binary.LittleEndian.Uint32(head) == 0x184d2204:
		return nil, x.errorf(0, ErrUnknownFormat, "compressed with xz, bzip2 or lz4; only gzip and zstd are read directly (decompress it first)")
	}
	if x.compressed != "" {
		if err := x.fill(4); err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, x.errorf(0, ErrUnknownFormat, "%s stream holds %d bytes", x.compressed, x.w)
			}
			return nil, x.ioError(0, err)
		}
	}
	switch m := binary.LittleEndian.Uint32(x.buf[x.r:]); m {
	case magicNG:
		x.layout.Format = FormatPcapNG
		// The section header is parsed by the first call to Next.
	case magicMicro, magicNano, magicModified,
		bswap32(magicMicro), bswap32(magicNano), bswap32(magicModified):
		x.layout.Format = FormatPcap
		if err := x.readPcapHeader(); err != nil {
			return nil, err
		}
	default:
		return nil, x.errorf(0, ErrUnknownFormat, "magic %08x", binary.BigEndian.Uint32(x.buf[x.r:]))
	}
	return x, nil
}

// restart makes the reader read from a decompressor; nothing of the raw
// input has been consumed as capture data yet.
func (x *Reader) restart(zr io.Reader, closeFn func()) {
	x.src, x.closeFn, x.size = zr, closeFn, -1
	x.r, x.w, x.base, x.eof = 0, 0, 0, false
}

// Close releases a decompressor, if any. It does not close the underlying
// reader.
func (x *Reader) Close() error {
	if x.ahead != nil {
		x.ahead.stop()
	}
	if x.closeFn != nil {
		x.closeFn()
		x.closeFn = nil
	}
	return nil
}

// Buffer returns the reader's buffer, for NewReaderBuffer once the
// reader is no longer used (its records' Data point into it).
func (x *Reader) Buffer() []byte { return x.buf }

// Format reports pcap or pcapng.
func (x *Reader) Format() Format { return x.layout.Format }

// GzipCheckpoint is a place decompression of a gzip capture can resume
// at: a member start, or a DEFLATE block start with the 32 KiB of
// decompressed data before it.
type GzipCheckpoint = inflate.Checkpoint

// GzipCheckpoints makes the reader of a gzip capture call fn, while it
// reads, with checkpoints about every bytes of decompressed data apart
// (block starts a quarter more apart, member starts any time after
// every). The checkpoint's Window is valid only during the call. Call
// it before the first Next; other captures ignore it.
func (x *Reader) GzipCheckpoints(every int64, fn func(GzipCheckpoint)) {
	if x.gz != nil {
		x.gz.Checkpoints(every, fn)
		x.ckEvery, x.ckFn = every, fn
	}
}

// DecompressAhead makes the reader of a compressed capture decompress
// in a goroutine of its own, a few MiB ahead of Next, so that
// decompressing and decoding use two cores (the 2 GB real capture's
// gzip -1 indexed in 5.7 s instead of 6.2 on two cores, for 4 MiB of
// buffers; docs/BENCHMARKS.md). Checkpoints (GzipCheckpoints, which
// must be asked for first) are still passed on the goroutine that calls
// Next, when the output that follows them is read. Call it before the
// first Next; the reader must then be closed (Close), which stops the
// goroutine and waits for the read it is in: a source whose reads may
// block indefinitely (a pipe) should not decompress ahead. Plain
// captures ignore it.
func (x *Reader) DecompressAhead() {
	if x.compressed == "" || x.ahead != nil {
		return
	}
	a := newAhead(x.src, x.gz, x.ckEvery, x.ckFn)
	x.ahead, x.src = a, a
}

// NewGzipReaderAt reads the decompressed bytes of the gzip capture ra
// (size bytes long) at any offset, for a RecordReader: find returns the
// checkpoint at or before an offset (the zero GzipCheckpoint, the file's
// start, when there is none), and every is about their spacing. Reads
// just past the previous one go on decompressing where it stopped.
func NewGzipReaderAt(ra io.ReaderAt, size int64, find func(off int64) (GzipCheckpoint, error), every int64) io.ReaderAt {
	return inflate.NewReaderAt(ra, size, find, every)
}

// Compression names the compression of the input ("gzip", "zstd") or is
// empty for a plain capture. Offsets of a compressed capture refer to the
// decompressed bytes.
func (x *Reader) Compression() string { return x.compressed }

// Layout describes the sections and interfaces read so far. It is complete
// once Next has returned io.EOF.
func (x *Reader) Layout() *Layout { return &x.layout }

// Stats reports what has been read so far.
func (x *Reader) Stats() Stats { x.stats.Bytes = x.base + int64(x.r); return x.stats }

// Offset is the stream offset of the next unread byte.
func (x *Reader) Offset() int64 { return x.base + int64(x.r) }

// Name is the capture name given to NewReader.
func (x *Reader) Name() string { return x.name }

// Next reads the next record into rec. It returns io.EOF at the clean end
// of the capture, and otherwise an *Error; an error wrapping ErrTruncated
// means the capture was cut short and every earlier record was returned.
// rec.Data is valid until the next call.
func (x *Reader) Next(rec *Record) error {
	if err := x.next(rec); err != nil {
		return err
	}
	rec.Index = x.stats.Records
	x.stats.Records++
	return nil
}

// next reads the next record of either format; its error is sticky.
func (x *Reader) next(rec *Record) error {
	if x.err != nil {
		return x.err
	}
	var err error
	if x.layout.Format == FormatPcap {
		err = x.nextPcap(rec)
	} else {
		err = x.nextNG(rec)
	}
	x.err = err
	return err
}

// fill makes at least n unread bytes available in buf[r:w]. It returns
// io.EOF when the input ended with no unread bytes, io.ErrUnexpectedEOF
// when it ended with fewer than n.
func (x *Reader) fill(n int) error {
	if x.w-x.r >= n {
		return nil
	}
	if x.r+n > len(x.buf) && x.r > 0 {
		copy(x.buf, x.buf[x.r:x.w])
		x.base += int64(x.r)
		x.w -= x.r
		x.r = 0
	}
	for x.w-x.r < n {
		if x.eof {
			if x.w == x.r {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		if x.w == len(x.buf) {
			// Grow only as data arrives, so a corrupt length field costs
			// at most twice the bytes the input really has.
			nb := make([]byte, min(2*len(x.buf), max(n, len(x.buf)+1)))
			copy(nb, x.buf[:x.w])
			x.buf = nb
		}
		m, err := x.src.Read(x.buf[x.w:])
		x.w += m
		if err == io.EOF {
			x.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// discard skips n bytes without keeping them in the buffer.
func (x *Reader) discard(n int64) error {
	for n > 0 {
		if x.w == x.r {
			if err := x.fill(1); err != nil {
				return err
			}
		}
		k := min(n, int64(x.w-x.r))
		x.r += int(k)
		n -= k
	}
	return nil
}

func (x *Reader) errorf(off int64, err error, format string, args ...any) *Error {
	return &Error{File: x.name, Offset: off, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// ioError wraps a read failure; a short read becomes ErrTruncated.
func (x *Reader) ioError(off int64, err error) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return x.errorf(off, ErrTruncated, "input ends at offset %d", x.base+int64(x.w))
	}
	return &Error{File: x.name, Offset: off, Err: err}
}

func (x *Reader) u16(b []byte) uint16 {
	if x.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (x *Reader) u32(b []byte) uint32 {
	if x.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func bswap32(v uint32) uint32 { return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24 }

// ---- classic pcap ----

func (x *Reader) readPcapHeader() error {
	if err := x.fill(24); err != nil {
		return x.ioError(0, err)
	}
	h := x.buf[x.r : x.r+24]
	m := binary.LittleEndian.Uint32(h)
	x.big = m == bswap32(magicMicro) || m == bswap32(magicNano) || m == bswap32(magicModified)
	if x.big {
		m = bswap32(m)
	}
	x.nanos = m == magicNano
	x.hdrLen = 16
	if m == magicModified {
		x.hdrLen = 24
	}
	x.snap = x.u32(h[16:])
	x.link = LinkType(x.u32(h[20:]) & 0xffff) // upper bits carry FCS information
	x.layout.Sections = append(x.layout.Sections, Section{
		Offset: 0, BigEndian: x.big, Raw: append([]byte(nil), h...),
		Nanos: x.nanos, RecordHdr: x.hdrLen,
	})
	x.layout.Interfaces = append(x.layout.Interfaces, Interface{LinkType: x.link, SnapLen: x.snap})
	x.r += 24
	return nil
}

func (x *Reader) nextPcap(rec *Record) error {
	hl := x.hdrLen
	if x.w-x.r < hl {
		if err := x.fill(hl); err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return x.ioError(x.base+int64(x.r), err)
		}
	}
	off := x.base + int64(x.r)
	h := x.buf[x.r : x.r+hl]
	var sec, frac, incl, orig uint32
	if x.big {
		sec, frac = binary.BigEndian.Uint32(h), binary.BigEndian.Uint32(h[4:])
		incl, orig = binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:])
	} else {
		sec, frac = binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:])
		incl, orig = binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:])
	}
	if incl > MaxRecordLen {
		return x.errorf(off, ErrRecordTooLarge, "captured length %d", incl)
	}
	n := hl + int(incl)
	if x.w-x.r < n {
		if x.size >= 0 && off+int64(n) > x.size && incl > max(x.snap, plausibleCapLen) {
			return x.errorf(off, ErrRecordTooLarge, "captured length %d runs past the end of the %d-byte file", incl, x.size)
		}
		if err := x.fill(n); err != nil {
			return x.ioError(off, err)
		}
		h = x.buf[x.r : x.r+hl]
	}
	rec.Offset = off
	rec.Length = n
	rec.CapLen = int(incl)
	rec.OrigLen = int(orig)
	ns := int64(frac)
	if !x.nanos {
		ns *= 1000
	}
	rec.Timestamp = int64(sec)*1e9 + ns
	rec.LinkType = x.link
	rec.Interface = 0
	rec.Data = x.buf[x.r+hl : x.r+n : x.r+n]
	rec.Raw = x.buf[x.r : x.r+n : x.r+n]
	x.r += n
	return nil
}

// ---- pcapng ----

const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 0x00000001
	blockOPB = 0x00000002
	blockSPB = 0x00000003
	blockEPB = 0x00000006
)

func (x *Reader) nextNG(rec *Record) error {
	for {
		if x.w-x.r < 8 {
			if err := x.fill(8); err != nil {
				if err == io.EOF {
					return io.EOF
				}
				return x.ioError(x.base+int64(x.r), err)
			}
		}
		off := x.base + int64(x.r)
		btype := x.u32(x.buf[x.r:])
		if btype == blockSHB {
			if err := x.readSHB(off); err != nil {
				return err
			}
			continue
		}
		if len(x.layout.Sections) == 0 {
			return x.errorf(off, ErrBadBlock, "first block is not a section header")
		}
		blen := x.u32(x.buf[x.r+4:])
		if blen < 12 || blen%4 != 0 {
			return x.errorf(off, ErrBadBlock, "block type %#x has length %d", btype, blen)
		}
		if blen > MaxRecordLen {
			return x.errorf(off, ErrRecordTooLarge, "block type %#x has length %d", btype, blen)
		}
		n := int(blen)
		isPacket := btype == blockEPB || btype == blockSPB || btype == blockOPB
		if !isPacket && n > skipInPlace {
			x.stats.SkippedBlocks++
			if err := x.discard(int64(n)); err != nil {
				return x.ioError(off, err)
			}
			continue
		}
		if x.w-x.r < n {
			if err := x.fill(n); err != nil {
				return x.ioError(off, err)
			}
		}
		b := x.buf[x.r : x.r+n]
		if x.u32(b[n-4:]) != blen {
			return x.errorf(off, ErrBadBlock, "block type %#x: trailing length %d differs from leading length %d", btype, x.u32(b[n-4:]), blen)
		}
		switch btype {
		case blockIDB:
			if !x.known {
				if err := x.readIDB(off, b); err != nil {
					return err
				}
			}
			x.r += n
		case blockEPB, blockOPB, blockSPB:
			ok, err := x.packetBlock(off, btype, b, rec)
			if err != nil {
				return err
			}
			x.r += n
			if ok {
				return nil
			}
		default:
			x.stats.SkippedBlocks++
			x.r += n
		}
	}
}

func (x *Reader) readSHB(off int64) error {
	if err := x.fill(12); err != nil {
		return x.ioError(off, err)
	}
	switch binary.LittleEndian.Uint32(x.buf[x.r+8:]) {
	case byteOrderMagic:
		x.big = false
	case bswap32(byteOrderMagic):
		x.big = true
	default:
		return x.errorf(off, ErrBadBlock, "section header has byte-order magic %08x", binary.BigEndian.Uint32(x.buf[x.r+8:]))
	}
	blen := x.u32(x.buf[x.r+4:])
	if blen < 28 || blen%4 != 0 {
		return x.errorf(off, ErrBadBlock, "section header has length %d", blen)
	}
	if blen > skipInPlace {
		return x.errorf(off, ErrRecordTooLarge, "section header has length %d", blen)
	}
	n := int(blen)
	if err := x.fill(n); err != nil {
		return x.ioError(off, err)
	}
	b := x.buf[x.r : x.r+n]
	if x.u32(b[n-4:]) != blen {
		return x.errorf(off, ErrBadBlock, "section header: trailing length %d differs from leading length %d", x.u32(b[n-4:]), blen)
	}
	if major := x.u16(b[12:]); major != 1 {
		return x.errorf(off, ErrUnsupportedVersion, "section version %d.%d", major, x.u16(b[14:]))
	}
	if x.known {
		// Reading at offsets of a capture whose layout is known: find the
		// section rather than adding it.
		si := slices.IndexFunc(x.layout.Sections, func(s Section) bool { return s.Offset == off })
		if si < 0 {
			return x.errorf(off, ErrBadBlock, "section header not in the capture's layout")
		}
		x.sec = si
		x.r += n
		return nil
	}
	x.sec = len(x.layout.Sections)
	x.layout.Sections = append(x.layout.Sections, Section{
		Offset: off, BigEndian: x.big, Raw: append([]byte(nil), b...),
		FirstInterface: len(x.layout.Interfaces),
	})
	x.r += n
	return nil
}

func (x *Reader) readIDB(off int64, b []byte) error {
	if len(b) < 20 {
		return x.errorf(off, ErrBadBlock, "interface description block of %d bytes", len(b))
	}
	ifc := Interface{
		Section:  x.sec,
		LinkType: LinkType(x.u16(b[8:])),
		SnapLen:  x.u32(b[12:]),
		Offset:   off,
		Raw:      append([]byte(nil), b...),
		TsResol:  6,
	}
	opts := b[16 : len(b)-4]
	for len(opts) >= 4 {
		code, l := x.u16(opts), int(x.u16(opts[2:]))
		if code == 0 || 4+l > len(opts) {
			break
		}
		v := opts[4 : 4+l]
		switch {
		case code == 9 && l >= 1:
			ifc.TsResol = v[0]
		case code == 14 && l >= 8:
			if x.big {
				ifc.TsOffset = int64(binary.BigEndian.Uint64(v))
			} else {
				ifc.TsOffset = int64(binary.LittleEndian.Uint64(v))
			}
		}
		opts = opts[4+(l+3)&^3:]
	}
	x.layout.Interfaces = append(x.layout.Interfaces, ifc)
	x.scales = append(x.scales, newTsScale(ifc.TsResol, ifc.TsOffset))
	return nil
}

// packetBlock fills rec from an EPB, OPB or SPB. It reports false (and no
// error) for a block it passed over with a warning.
func (x *Reader) packetBlock(off int64, btype uint32, b []byte, rec *Record) (bool, error) {
	var ifid, caplen, origlen uint32
	var units uint64
	var dataAt int
	hasTs := true
	switch btype {
	case blockEPB, blockOPB:
		// The obsolete packet block has the layout of the enhanced
		// one, with a 16-bit interface ID and drop count in its place.
		if len(b) < 32 {
			what := "enhanced packet"
			if btype == blockOPB {
				what = "packet"
			}
			return false, x.errorf(off, ErrBadBlock, "%s block of %d bytes", what, len(b))
		}
		if btype == blockEPB {
			ifid = x.u32(b[8:])
		} else {
			ifid = uint32(x.u16(b[8:]))
		}
		units = uint64(x.u32(b[12:]))<<32 | uint64(x.u32(b[16:]))
		caplen, origlen = x.u32(b[20:]), x.u32(b[24:])
		dataAt = 28
	case blockSPB:
		if len(b) < 16 {
			return false, x.errorf(off, ErrBadBlock, "simple packet block of %d bytes", len(b))
		}
		origlen = x.u32(b[8:])
		caplen = uint32(len(b) - 16)
		if origlen < caplen {
			caplen = origlen
		}
		dataAt = 12
		hasTs = false
	}
	if int(caplen) > len(b)-dataAt-4 {
		return false, x.errorf(off, ErrBadBlock, "captured length %d does not fit in a %d-byte block", caplen, len(b))
	}
	sec := &x.layout.Sections[x.sec]
	gi := sec.FirstInterface + int(ifid)
	if int(ifid) >= len(x.layout.Interfaces)-sec.FirstInterface {
		x.stats.SkippedBadIf++
		if x.OnWarning != nil {
			x.OnWarning(x.errorf(off, ErrNoInterface, "interface %d; record skipped", ifid))
		}
		return false, nil
	}
	ifc := &x.layout.Interfaces[gi]
	if btype == blockSPB && ifc.SnapLen != 0 && caplen > ifc.SnapLen {
		caplen = ifc.SnapLen
	}
	rec.Offset = off
	rec.Length = len(b)
	rec.CapLen = int(caplen)
	rec.OrigLen = int(origlen)
	if hasTs {
		rec.Timestamp = x.scales[gi].nanos(units)
		x.lastTs = rec.Timestamp
	} else {
		rec.Timestamp = x.lastTs // pcapng gives simple packets no time; keep file order
	}
	rec.LinkType = ifc.LinkType
	rec.Interface = gi
	rec.Data = b[dataAt : dataAt+int(caplen) : dataAt+int(caplen)]
	rec.Raw = b
	return true, nil
}
