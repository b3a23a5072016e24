package pcapio

import (
	"errors"
	"io"
	"sort"
)

// RecordReader reads single records at known offsets, as an index does
// when it extracts a flow. It needs the capture's Layout, which a Reader
// gathered when it walked the file. It is not safe for concurrent use;
// give each goroutine its own (they may share the io.ReaderAt).
type RecordReader struct {
	ra      io.ReaderAt
	x       Reader
	walking bool  // the buffer holds the file from x.base on (SeekRecord)
	index   int64 // index of the next record Next reads
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// NewRecordReader reads records of the capture ra described by layout.
// name is used in error messages.
func NewRecordReader(ra io.ReaderAt, name string, layout *Layout) *RecordReader {
	rr := &RecordReader{ra: ra}
	rr.x = Reader{name: name, src: eofReader{}, size: -1, eof: true, layout: *layout, known: true}
	for _, ifc := range layout.Interfaces {
		rr.x.scales = append(rr.x.scales, newTsScale(ifc.TsResol, ifc.TsOffset))
	}
	return rr
}

// ReadRecord reads the record that starts at byte offset off. length is
// the record's length in the file (Record.Length as the streaming reader
// reported it); pass 0 when it is not known and the header is read first.
// rec.Data and rec.Raw are valid until the next call.
func (rr *RecordReader) ReadRecord(off int64, length int, rec *Record) error {
	x := &rr.x
	l := &x.layout
	si := sort.Search(len(l.Sections), func(i int) bool { return l.Sections[i].Offset > off }) - 1
	if si < 0 {
		return x.errorf(off, ErrBadBlock, "offset lies before the first section")
	}
	sec := &l.Sections[si]
	x.sec, x.big = si, sec.BigEndian
	if l.Format == FormatPcap {
		x.nanos, x.hdrLen = sec.Nanos, sec.RecordHdr
		x.link, x.snap = l.Interfaces[0].LinkType, l.Interfaces[0].SnapLen
	}
	if length <= 0 {
		hl := 8
		if l.Format == FormatPcap {
			hl = x.hdrLen
		}
		if err := rr.readAt(off, hl); err != nil {
			return err
		}
		if l.Format == FormatPcap {
			length = hl + int(x.u32(x.buf[8:]))
		} else {
			length = int(x.u32(x.buf[4:]))
		}
		if length <= 0 || length > MaxRecordLen+64 {
			return x.errorf(off, ErrRecordTooLarge, "record length %d", length)
		}
	}
	if err := rr.readAt(off, length); err != nil {
		return err
	}
	x.err = nil
	x.src, x.eof = eofReader{}, true
	var err error
	if l.Format == FormatPcap {
		err = x.nextPcap(rec)
	} else {
		err = x.nextNG(rec)
	}
	rr.walking = false
	switch {
	case err == io.EOF:
		return x.errorf(off, ErrBadBlock, "no packet record at this offset")
	case err != nil:
		return err
	case rec.Offset != off || rec.Length != length:
		return x.errorf(off, ErrBadBlock, "record at this offset is %d bytes, expected %d", rec.Length, length)
	}
	return nil
}

func (rr *RecordReader) readAt(off int64, n int) error {
	x := &rr.x
	if cap(x.buf) < n {
		x.buf = make([]byte, max(n, 64<<10))
	}
	x.buf = x.buf[:cap(x.buf)]
	m, err := rr.ra.ReadAt(x.buf[:n], off)
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			return x.errorf(off, ErrTruncated, "file ends %d bytes into a %d-byte record", m, n)
		}
		return &Error{File: x.name, Offset: off, Err: err}
	}
	x.r, x.w, x.base = 0, n, off
	return nil
}

// SeekRecord positions the reader at byte offset off, where the packet record
// with index idx (Record.Index) begins or, in pcapng, the blocks that
// come before it do: an offset an index kept of every so many records.
// Next then reads that record and the ones after it.
func (rr *RecordReader) SeekRecord(off, idx int64) {
	x := &rr.x
	rr.index = idx
	x.err = nil
	if rr.walking && off >= x.base && off <= x.base+int64(x.w) {
		x.r = int(off - x.base) // within what was read already
	} else {
		if len(x.buf) < walkBuffer {
			x.buf = make([]byte, walkBuffer)
		}
		x.buf = x.buf[:cap(x.buf)]
		x.src = &atReader{ra: rr.ra, off: off}
		x.base, x.r, x.w, x.eof = off, 0, 0, false
		rr.walking = true
	}
	l := &x.layout
	si := max(sort.Search(len(l.Sections), func(i int) bool { return l.Sections[i].Offset > off })-1, 0)
	if len(l.Sections) > 0 {
		sec := &l.Sections[si]
		x.sec, x.big = si, sec.BigEndian
		if l.Format == FormatPcap {
			x.nanos, x.hdrLen = sec.Nanos, sec.RecordHdr
			x.link, x.snap = l.Interfaces[0].LinkType, l.Interfaces[0].SnapLen
		}
	}
}

// walkBuffer is how much Next reads at a time: a flow's records cluster,
// so one read usually serves several.
const walkBuffer = 64 << 10

// Next reads the packet record after the previous one (or at the SeekRecord
// position), passing over pcapng blocks that hold no packet exactly as
// Reader does, so that its Index counts the same records. It returns
// io.EOF at the end of the file.
func (rr *RecordReader) Next(rec *Record) error {
	x := &rr.x
	if !rr.walking {
		return errors.New("pcapio: RecordReader.Next without SeekRecord")
	}
	if err := x.next(rec); err != nil {
		return err
	}
	rec.Index = rr.index
	rr.index++
	return nil
}

// atReader reads an io.ReaderAt sequentially from an offset.
type atReader struct {
	ra  io.ReaderAt
	off int64
}

func (a *atReader) Read(p []byte) (int, error) {
	n, err := a.ra.ReadAt(p, a.off)
	a.off += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}
