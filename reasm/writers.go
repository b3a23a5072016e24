package reasm

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// HeaderLen is the size of the --tcpheader record header.
const HeaderLen = 12

// AppendHeader appends the record header that --tcpheader writes before
// each reassembled segment: little-endian u64 timestamp (ns since the
// epoch, UTC), u16 length of the bytes that follow, u16 stream ID (the
// flow ID's low 16 bits).
func AppendHeader(b []byte, ts int64, n int, stream uint64) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	return binary.LittleEndian.AppendUint16(b, uint16(stream))
}

// framed writes data chunks to w, each behind a header when header is
// set (split so that a chunk's length fits the header's 16 bits).
func framed(w io.Writer, header bool, stream uint64, ts int64, b []byte, scratch *[]byte) error {
	if !header {
		_, err := w.Write(b)
		return err
	}
	for len(b) > 0 {
		n := min(len(b), 0xffff)
		h := AppendHeader((*scratch)[:0], ts, n, stream)
		*scratch = h
		if _, err := w.Write(h); err != nil {
			return err
		}
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// StreamName is the file name of a flow's stream in a directory:
// <id>-<proto>-<src>.<sport>-<dst>.<dport>, IPv6 colons written as "_".
func StreamName(id uint64, proto, src string, sport uint16, dst string, dport uint16) string {
	src = strings.ReplaceAll(src, ":", "_")
	dst = strings.ReplaceAll(dst, ":", "_")
	return fmt.Sprintf("%d-%s-%s.%d-%s.%d", id, proto, src, sport, dst, dport)
}

// DirWriter writes one file per stream into a directory without ever
// holding more than MaxOpen files open: streams buffer a little, and
// files are closed least recently used first and reopened to append.
// Each file is written as ".NAME.partial" and renamed to NAME when its
// stream ends, so an interrupted run leaves nothing that looks complete;
// with Direct, files are written under their own names, for a caller
// that writes into a staging directory and renames that instead (one
// rename per run rather than one per stream).
type DirWriter struct {
	Dir       string
	MaxOpen   int  // default 256, less under a low open-file limit
	Header    bool // --tcpheader framing
	Direct    bool // no .partial names: Dir itself is the staging area
	MaxMemory int  // bytes buffered across streams before they are flushed; default 64 MiB

	open     *list.List // of *FileStream, most recent first
	buffered int
	all      map[*FileStream]bool
	scratch  []byte
	Files    int   // finished files
	Bytes    int64 // bytes written
}

// FileStream is one stream's file; it implements Sink.
type FileStream struct {
	w       *DirWriter
	name    string
	stream  uint64
	buf     []byte
	f       rawFile
	isOpen  bool
	elem    *list.Element
	created bool
	size    int64 // bytes in the file, flushed or not
	err     error
}

const fileBuffer = 32 << 10

// defaultMaxOpen is 256 files, or half of what the process may still open
// under a lower limit (captures, the index and the runtime need some).
func defaultMaxOpen(limit int) int {
	if limit <= 0 {
		return 256
	}
	return max(4, min(256, (limit-32)/2))
}

// Stream returns the sink for a stream written to name.
func (d *DirWriter) Stream(name string, stream uint64) *FileStream {
	if d.open == nil {
		d.open = list.New()
		d.all = map[*FileStream]bool{}
		if d.MaxOpen <= 0 {
			d.MaxOpen = defaultMaxOpen(fdLimit())
		}
		if d.MaxMemory <= 0 {
			d.MaxMemory = 64 << 20
		}
	}
	fs := &FileStream{w: d, name: name, stream: stream}
	d.all[fs] = true
	return fs
}

// partial is where the file is written until its stream ends.
func (fs *FileStream) partial() string {
	if fs.w.Direct {
		return filepath.Join(fs.w.Dir, fs.name)
	}
	return filepath.Join(fs.w.Dir, "."+fs.name+".partial")
}

// Data buffers b (behind a header with --tcpheader).
func (fs *FileStream) Data(ts int64, b []byte) error {
	if fs.err != nil {
		return fs.err
	}
	before := len(fs.buf)
	d := fs.w
	if d.Header {
		for len(b) > 0 {
			n := min(len(b), 0xffff)
			fs.buf = AppendHeader(fs.buf, ts, n, fs.stream)
			fs.buf = append(fs.buf, b[:n]...)
			b = b[n:]
		}
	} else {
		fs.buf = append(fs.buf, b...)
	}
	d.buffered += len(fs.buf) - before
	if len(fs.buf) >= fileBuffer {
		return fs.flush()
	}
	if d.buffered > d.MaxMemory {
		for s := range d.all {
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sparseFrom is the smallest run of zeros a file gets by extending
// itself rather than by writing them.
const sparseFrom = 64 << 10

// Zeros adds n zero bytes to the stream (a GapZero hole). Large runs
// extend the file with ftruncate, leaving a hole in it that takes no disk
// space, as tcpflow's seek does; --tcpheader framing writes them out, as
// each chunk needs its header.
func (fs *FileStream) Zeros(ts int64, n uint64) error {
	if fs.w.Header || n < sparseFrom {
		fillZeros(n, func(z []byte) error { fs.Data(ts, z); return fs.err })
		return fs.err
	}
	if err := fs.flush(); err != nil {
		return err
	}
	if err := fs.openForWrite(); err != nil {
		return err
	}
	if err := extendFile(fs.f, fs.size+int64(n)); err != nil {
		fs.err = fmt.Errorf("%s: extending over a %d-byte gap: %w", fs.partial(), n, err)
		return fs.err
	}
	fs.size += int64(n)
	fs.w.Bytes += int64(n)
	return nil
}

// openForWrite makes the stream's file open and most recently used,
// closing the least recently used one if MaxOpen files are open.
func (fs *FileStream) openForWrite() error {
	d := fs.w
	if fs.isOpen {
		d.open.MoveToFront(fs.elem)
		return nil
	}
	for d.open.Len() >= d.MaxOpen {
		old := d.open.Remove(d.open.Back()).(*FileStream)
		old.elem = nil
		if err := old.f.Close(); err != nil && old.err == nil {
			old.err = err
		}
		old.isOpen = false
	}
	f, err := openFile(fs.partial(), !fs.created)
	if err != nil {
		fs.err = err
		return err
	}
	fs.f, fs.created, fs.isOpen = f, true, true
	fs.elem = d.open.PushFront(fs)
	return nil
}

// flush writes the buffer to the file, opening it if needed.
func (fs *FileStream) flush() error {
	if len(fs.buf) == 0 || fs.err != nil {
		return fs.err
	}
	d := fs.w
	if err := fs.openForWrite(); err != nil {
		return err
	}
	n, err := fs.f.Write(fs.buf)
	fs.size += int64(n)
	d.Bytes += int64(n)
	d.buffered -= len(fs.buf)
	fs.buf = fs.buf[:0]
	if err != nil {
		fs.err = err
	}
	return err
}

// Finish flushes and closes the stream's file and gives it its name.
// A stream that received no bytes leaves no file.
func (fs *FileStream) Finish() error {
	d := fs.w
	delete(d.all, fs)
	var err error
	if !fs.isOpen && !fs.created && len(fs.buf) > 0 {
		// A stream that fits its buffer: one create, one write.
		err = fs.writeOnce()
	} else {
		err = fs.flush()
	}
	if fs.isOpen {
		d.open.Remove(fs.elem)
		if cerr := fs.f.Close(); err == nil {
			err = cerr
		}
		fs.isOpen = false
	}
	// The stream (and so this FileStream) lives on in the assembler until
	// the run ends, for its counters; its buffer must not.
	fs.buf = nil
	if err == nil && fs.created {
		if !d.Direct {
			err = renameFile(fs.partial(), filepath.Join(d.Dir, fs.name))
		}
		d.Files++
	}
	return err
}

func (fs *FileStream) writeOnce() error {
	f, err := openFile(fs.partial(), true)
	if err != nil {
		fs.err = err
		return err
	}
	fs.created = true
	n, err := f.Write(fs.buf)
	fs.size += int64(n)
	fs.w.Bytes += int64(n)
	fs.w.buffered -= len(fs.buf)
	fs.buf = fs.buf[:0]
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort removes the files of unfinished streams.
func (d *DirWriter) Abort() {
	for fs := range d.all {
		if fs.isOpen {
			fs.f.Close()
		}
		os.Remove(fs.partial())
	}
}

// StreamWriter writes the bytes of every stream to one io.Writer in the
// order they are reassembled; with Header each chunk is framed so that
// streams can be told apart.
type StreamWriter struct {
	W       io.Writer
	Header  bool
	scratch []byte
	Bytes   int64
}

// Sink returns the sink of one stream.
func (w *StreamWriter) Sink(stream uint64) Sink {
	return SinkFunc(func(ts int64, b []byte) error {
		w.Bytes += int64(len(b))
		return framed(w.W, w.Header, stream, ts, b, &w.scratch)
	})
}
