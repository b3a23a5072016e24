package pcapio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The zstd seekable format (facebook/zstd contrib/seekable_format): a
// capture compressed as independent zstd frames, then a skippable frame
// holding the seek table:
//
//	frame* [skippable magic 0x184D2A5E u32le] [table length u32le]
//	       ([compressed size u32le] [decompressed size u32le])*
//	       [frames u32le] [descriptor u8] [seekable magic 0x8F92EAB1 u32le]
//
// Every zstd decoder reads it as the plain capture (skippable frames are
// skipped), so `zstd -d` restores the capture byte for byte; a reader
// that knows the table decompresses only the frames that hold the bytes
// it wants. Frames are cut at record boundaries, about FrameSize bytes of
// capture each.
const (
	seekableMagic  = 0x8F92EAB1
	skippableMagic = 0x184D2A5E
	seekFooterLen  = 9
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
		seq        int
		out        []byte
		plain, enc int
		err        error
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
				out := enc.EncodeAll(j.data, nil)
				results <- result{seq: j.seq, out: out, plain: len(j.data), enc: len(out)}
			}
		}()
	}
	// The writer: frames in order, and their sizes for the table.
	var table []byte
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
				if _, err := dst.Write(x.out); err != nil {
					werr = err
					continue
				}
				st.Out += int64(x.enc)
				st.Frames++
				table = binary.LittleEndian.AppendUint32(table, uint32(x.enc))
				table = binary.LittleEndian.AppendUint32(table, uint32(x.plain))
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
	// The seek table, in a skippable frame.
	frame := binary.LittleEndian.AppendUint32(nil, skippableMagic)
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(table)+seekFooterLen))
	frame = append(frame, table...)
	frame = binary.LittleEndian.AppendUint32(frame, uint32(st.Frames))
	frame = append(frame, 0) // descriptor: no checksums in the table
	frame = binary.LittleEndian.AppendUint32(frame, seekableMagic)
	if _, err := dst.Write(frame); err != nil {
		return st, err
	}
	st.Out += int64(len(frame))
	return st, nil
}

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
// file at any offset, decompressing only the frames it needs (and
// keeping the last two). It is safe for concurrent use.
type SeekableReaderAt struct {
	ra    io.ReaderAt
	name  string
	comp  []int64 // compressed offset of frame i (and the end)
	plain []int64 // decompressed offset of frame i (and the end)
	dec   *zstd.Decoder
	mu    sync.Mutex
	cache [2]struct {
		i    int
		data []byte
	}
	turn int
}

// OpenSeekable reads the seek table at the end of a zstd file of the
// given size. It returns ErrNotSeekable for a zstd file without one, and
// ErrSeekTable (with the offset) for a table that does not add up.
func OpenSeekable(ra io.ReaderAt, size int64, name string) (*SeekableReaderAt, error) {
	bad := func(off int64, format string, args ...any) error {
		return fmt.Errorf("%s: offset %d: %w: %s", name, off, ErrSeekTable, fmt.Sprintf(format, args...))
	}
	if size < seekFooterLen+8 {
		return nil, ErrNotSeekable
	}
	var foot [seekFooterLen]byte
	if _, err := ra.ReadAt(foot[:], size-seekFooterLen); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, ErrNotSeekable
	}
	n := int64(binary.LittleEndian.Uint32(foot[:4]))
	desc := foot[4]
	if desc&0x7c != 0 {
		return nil, bad(size-5, "reserved descriptor bits set (%#x)", desc)
	}
	entry := int64(8)
	if desc&0x80 != 0 {
		entry = 12
	}
	tableLen := n*entry + seekFooterLen
	start := size - tableLen - 8
	if start < 0 {
		return nil, bad(size-seekFooterLen, "%d frames do not fit in a file of %d bytes", n, size)
	}
	hdr := make([]byte, 8)
	if _, err := ra.ReadAt(hdr, start); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if binary.LittleEndian.Uint32(hdr) != skippableMagic || int64(binary.LittleEndian.Uint32(hdr[4:])) != tableLen {
		return nil, bad(start, "no skippable frame of %d bytes before the footer", tableLen)
	}
	table := make([]byte, n*entry)
	if _, err := ra.ReadAt(table, start+8); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &SeekableReaderAt{ra: ra, name: name, comp: make([]int64, n+1), plain: make([]int64, n+1)}
	for i := int64(0); i < n; i++ {
		c := int64(binary.LittleEndian.Uint32(table[i*entry:]))
		p := int64(binary.LittleEndian.Uint32(table[i*entry+4:]))
		if c == 0 && p > 0 {
			return nil, bad(start+8+i*entry, "frame %d: no compressed bytes for %d bytes", i, p)
		}
		s.comp[i+1], s.plain[i+1] = s.comp[i]+c, s.plain[i]+p
	}
	if s.comp[n] != start {
		return nil, bad(start, "the frames add up to %d bytes, the table starts at %d", s.comp[n], start)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	s.dec = dec
	for i := range s.cache {
		s.cache[i].i = -1
	}
	return s, nil
}

// ErrNotSeekable means a zstd file has no seek table.
var ErrNotSeekable = errors.New("zstd file without a seek table")

// Size is the decompressed size.
func (s *SeekableReaderAt) Size() int64 { return s.plain[len(s.plain)-1] }

// FrameStart is the decompressed offset where frame i begins.
func (s *SeekableReaderAt) FrameStart(i int) int64 { return s.plain[i] }

// Frames is the number of frames.
func (s *SeekableReaderAt) Frames() int { return len(s.plain) - 1 }

// frame returns frame i decompressed.
func (s *SeekableReaderAt) frame(i int) ([]byte, error) {
	for _, c := range s.cache {
		if c.i == i {
			return c.data, nil
		}
	}
	comp := make([]byte, s.comp[i+1]-s.comp[i])
	if _, err := s.ra.ReadAt(comp, s.comp[i]); err != nil {
		return nil, fmt.Errorf("%s: offset %d: frame %d: %w", s.name, s.comp[i], i, err)
	}
	data, err := s.dec.DecodeAll(comp, make([]byte, 0, s.plain[i+1]-s.plain[i]))
	if err != nil {
		return nil, fmt.Errorf("%s: offset %d: frame %d: %w", s.name, s.comp[i], i, err)
	}
	if int64(len(data)) != s.plain[i+1]-s.plain[i] {
		return nil, fmt.Errorf("%s: offset %d: %w: frame %d holds %d bytes, the table says %d", s.name, s.comp[i], ErrSeekTable, i, len(data), s.plain[i+1]-s.plain[i])
	}
	c := &s.cache[s.turn]
	s.turn = (s.turn + 1) % len(s.cache)
	c.i, c.data = i, data
	return data, nil
}

// ReadAt reads decompressed bytes at off.
func (s *SeekableReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= s.Size() {
			return n, io.EOF
		}
		i := sort.Search(len(s.plain)-1, func(i int) bool { return s.plain[i+1] > pos })
		data, err := s.frame(i)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-s.plain[i]:])
	}
	return n, nil
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
