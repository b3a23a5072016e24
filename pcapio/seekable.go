package pcapio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	seekable "github.com/SaveTheRbtz/zstd-seekable-format-go/pkg"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The zstd seekable format (facebook/zstd contrib/seekable_format), as
// github.com/SaveTheRbtz/zstd-seekable-format-go writes and reads it: a
// capture compressed as independent zstd frames, then a skippable frame
// holding the seek table (each frame's compressed and decompressed size
// and a checksum). Every zstd decoder reads it as the plain capture, so
// `zstd -d` restores the capture byte for byte; a reader that knows the
// table decompresses only the frames that hold the bytes it wants.
// pcapflow cuts the frames at record boundaries, about FrameSize bytes of
// capture each, and compresses them on all cores.
const (
	seekableMagic = 0x8F92EAB1
	seekFooterLen = 9
)

// ErrSeekTable means a seek table is damaged.
var ErrSeekTable = errors.New("bad zstd seek table")

// SeekableOptions configure WriteSeekable.
type SeekableOptions struct {
	FrameSize int               // capture bytes a frame (0: 1 MiB)
	Level     zstd.EncoderLevel // 0: SpeedFastest, about zstd -1
	Workers   int               // compressing goroutines (0: GOMAXPROCS)
}

// SeekableStats report WriteSeekable's work.
type SeekableStats struct {
	In, Out int64 // capture bytes, compressed bytes (with the table)
	Frames  int
	Records int64
}

// WriteSeekable compresses the capture src (pcap or pcapng, or either
// compressed with gzip or zstd) to dst in the zstd seekable format, with
// frames cut at record boundaries, compressed on all cores. The capture
// is checked as it is read: a damaged one is an error with its offset,
// and nothing is claimed about what was written.
func WriteSeekable(dst io.Writer, src io.Reader, name string, o SeekableOptions) (SeekableStats, error) {
	var st SeekableStats
	if o.FrameSize <= 0 {
		o.FrameSize = 1 << 20
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedFastest
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	plain, closeFn, err := decompressed(src, name)
	if err != nil {
		return st, err
	}
	defer closeFn()
	// The capture's bytes as the reader reads them (it reads ahead of
	// the record it returns, so acc holds the bytes from chunk on).
	acc := &accumulator{}
	r, err := NewReader(io.TeeReader(plain, acc), name)
	if err != nil {
		return st, err
	}
	defer r.Close()

	type job struct {
		seq  int
		data []byte
	}
	type result struct {
		seq       int
		data, out []byte
		err       error
	}
	jobs := make(chan job, o.Workers)
	results := make(chan result, o.Workers)
	var wg sync.WaitGroup
	for i := 0; i < o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(o.Level), zstd.WithEncoderConcurrency(1),
				zstd.WithZeroFrames(true), zstd.WithEncoderCRC(true))
			for j := range jobs {
				if err != nil {
					results <- result{seq: j.seq, err: err}
					continue
				}
				results <- result{seq: j.seq, data: j.data, out: enc.EncodeAll(j.data, nil)}
			}
		}()
	}
	// The writer: frames in order through the library, which keeps the
	// table; it "encodes" each frame by taking the bytes a worker made.
	pre := &precompressed{}
	sw, err := seekable.NewWriter(dst, pre)
	if err != nil {
		return st, err
	}
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		pending := map[int]result{}
		next := 0
		for res := range results {
			pending[res.seq] = res
			for {
				x, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if werr == nil && x.err != nil {
					werr = x.err
				}
				if werr != nil {
					continue
				}
				pre.out = x.out
				if _, err := sw.Write(x.data); err != nil {
					werr = err
					continue
				}
				st.Out += int64(len(x.out))
				st.Frames++
			}
		}
	}()
	seq := 0
	send := func(data []byte) {
		jobs <- job{seq, data}
		seq++
	}
	var rec Record
	var rerr error
	for {
		if err := r.Next(&rec); err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
		st.Records++
		if rec.Offset-acc.base >= int64(o.FrameSize) {
			send(acc.cut(rec.Offset))
		}
	}
	if rerr == nil {
		// What the reader read past its last record: trailing blocks.
		io.Copy(io.Discard, io.TeeReader(plain, acc))
		if rest := acc.cut(acc.base + int64(len(acc.b))); len(rest) > 0 {
			send(rest)
		}
	}
	st.In = acc.base
	close(jobs)
	wg.Wait()
	close(results)
	<-done
	if rerr != nil {
		return st, rerr
	}
	if werr != nil {
		return st, werr
	}
	// The seek table, in a skippable frame: 9 bytes of footer, 8 of
	// frame header and 12 a frame.
	if err := sw.Close(); err != nil {
		return st, err
	}
	st.Out += int64(17 + 12*st.Frames)
	return st, nil
}

// precompressed is the encoder the seekable writer calls for each frame:
// the frame was compressed by a worker already.
type precompressed struct{ out []byte }

func (p *precompressed) EncodeAll(src, dst []byte) []byte { return append(dst, p.out...) }

// accumulator keeps the bytes written to it from base on.
type accumulator struct {
	b    []byte
	base int64 // offset of b[0]
}

func (a *accumulator) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// cut returns the bytes [base, off) and keeps the rest.
func (a *accumulator) cut(off int64) []byte {
	n := int(off - a.base)
	out := append([]byte(nil), a.b[:n]...)
	a.b = append(a.b[:0], a.b[n:]...)
	a.base = off
	return out
}

// decompressed undoes gzip or zstd compression of a capture stream.
func decompressed(r io.Reader, name string) (io.Reader, func(), error) {
	br := &peekReader{r: r}
	head, err := br.peek(4)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case head[0] == 0x1f && head[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: bad gzip header: %w", name, err)
		}
		return zr, func() { zr.Close() }, nil
	case binary.LittleEndian.Uint32(head) == 0xfd2fb528:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: bad zstd header: %w", name, err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// peekReader is a reader whose first bytes can be looked at first.
type peekReader struct {
	r    io.Reader
	head []byte
}

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.head) < n {
		b := make([]byte, n-len(p.head))
		k, err := p.r.Read(b)
		p.head = append(p.head, b[:k]...)
		if err != nil {
			if len(p.head) >= n {
				break
			}
			if err == io.EOF {
				return nil, fmt.Errorf("%w: file is %d bytes long", ErrUnknownFormat, len(p.head))
			}
			return nil, err
		}
	}
	return p.head[:n], nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// SeekableReaderAt reads the decompressed capture of a seekable zstd
// file at any offset, decompressing only the frames it needs. It is safe
// for concurrent use.
type SeekableReaderAt struct {
	r    seekable.Reader
	name string
	mu   sync.Mutex
	size int64
}

// OpenSeekable reads the seek table at the end of a zstd file of the
// given size. It returns ErrNotSeekable for a zstd file without one, and
// ErrSeekTable for a table that does not add up.
func OpenSeekable(ra io.ReaderAt, size int64, name string) (*SeekableReaderAt, error) {
	if !IsSeekable(ra, size) {
		return nil, ErrNotSeekable
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	r, err := seekable.NewReader(io.NewSectionReader(ra, 0, size), dec)
	if err != nil {
		return nil, fmt.Errorf("%s: offset %d: %w: %v", name, size-seekFooterLen, ErrSeekTable, err)
	}
	end, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrSeekTable, err)
	}
	return &SeekableReaderAt{r: r, name: name, size: end}, nil
}

// ErrNotSeekable means a zstd file has no seek table.
var ErrNotSeekable = errors.New("zstd file without a seek table")

// Size is the decompressed size.
func (s *SeekableReaderAt) Size() int64 { return s.size }

// ReadAt reads decompressed bytes at off; a damaged frame is an error
// that names the decompressed offset it was read for.
func (s *SeekableReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: offset %d (decompressed): %w", s.name, off+int64(n), err)
	}
	return n, err
}

// IsSeekable reports whether a zstd file has a seek table.
func IsSeekable(ra io.ReaderAt, size int64) bool {
	var foot [4]byte
	if size < seekFooterLen {
		return false
	}
	if _, err := ra.ReadAt(foot[:], size-4); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(foot[:]) == seekableMagic
}
