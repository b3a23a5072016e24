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
	ra io.ReaderAt
	x  Reader
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// NewRecordReader reads records of the capture ra described by layout.
// name is used in error messages.
func NewRecordReader(ra io.ReaderAt, name string, layout *Layout) *RecordReader {
	rr := &RecordReader{ra: ra}
	rr.x = Reader{name: name, src: eofReader{}, size: -1, eof: true, layout: *layout}
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
	var err error
	if l.Format == FormatPcap {
		err = x.nextPcap(rec)
	} else {
		err = x.nextNG(rec)
	}
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
