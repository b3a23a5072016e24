// Package readahead keeps the disk reading ahead of a sequential reader
// of a file, so that reading a capture that is not in the page cache
// overlaps with the work done on what was read.
//
// The kernel reads ahead of sequential reads by itself, but only by its
// read-ahead window (a few MB), and it grows that window only as the
// reader catches up with it; an ingest that computes between reads
// leaves the disk idle in between. A Reader tells the kernel, every
// Step bytes, that the Window bytes after that will be needed, so the
// requests are queued before the reader gets there.
package readahead

import (
	"io"
	"os"
)

const (
	// Step is how often, in bytes read, the advice is renewed.
	Step = 16 << 20
	// Window is how far ahead of the reader the advice reaches.
	Window = 96 << 20
)

// Reader reads a file sequentially from where it was when New was
// called. Advice the system does not take (another OS, a pipe) is
// ignored: the reads are the file's own either way.
//
// Each byte is advised once: the advised range always ends Window bytes
// after the reader, to within Step, and grows by what was read since.
type Reader struct {
	f      *os.File
	pos    int64 // file offset of the next Read
	ahead  int64 // the end of the advised range
	window int64 // Window and Step (tests shrink them)
	step   int64
	advise func(f *os.File, off, n int64)
}

// New returns a Reader of f from its current offset, and advises the
// system that f will be read sequentially.
func New(f *os.File) *Reader {
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		pos = 0
	}
	sequential(f)
	return &Reader{f: f, pos: pos, ahead: pos, window: Window, step: Step, advise: willNeed}
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.ahead-r.pos <= r.window-r.step {
		r.advise(r.f, r.ahead, r.pos+r.window-r.ahead)
		r.ahead = r.pos + r.window
	}
	n, err := r.f.Read(p)
	r.pos += int64(n)
	return n, err
}
