package index

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/inflate"
	"github.com/pcapflow/pcapflow/pcapio"
)

// GzipEvery is the spacing of a gzip capture's checkpoints, in
// decompressed bytes. Each costs its 32 KiB window (stored compressed),
// so at most 0.4% of the capture; extracting a record decompresses on
// average half of it, about 10 ms.
const GzipEvery = 8 << 20

// A resume point's value (Z key) is
//
//	uvarint(bit offset in the file) byte(1 for a member start)
//	uvarint(Len) uvarint(len(Sums)) Sums (4 bytes each, little-endian)
//	window
//
// where Len and Sums (the CRC-32 of each 64 KiB up to the next point)
// let extraction check what it decompresses, and the window, the 32 KiB
// of decompressed data before the point (none for a member start), is
// zstd-compressed.
//
// A coder's encode is for one goroutine (the capture stream's); decode
// may be called concurrently (a Store's readers share one decoder, whose
// DecodeAll is safe for that).
type resumeCoder struct {
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
}

func (c *resumeCoder) encode(dst []byte, p pcapio.GzipCheckpoint) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.In))
	flag := byte(0)
	if p.Member {
		flag = 1
	}
	dst = append(dst, flag)
	dst = binary.AppendUvarint(dst, uint64(p.Len))
	dst = binary.AppendUvarint(dst, uint64(len(p.Sums)))
	for _, s := range p.Sums {
		dst = binary.LittleEndian.AppendUint32(dst, s)
	}
	if p.Member {
		return dst
	}
	if c.enc == nil {
		c.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	}
	return c.enc.EncodeAll(p.Window, dst)
}

func (c *resumeCoder) decode(k resumeKey, v []byte) (pcapio.GzipCheckpoint, error) {
	p := pcapio.GzipCheckpoint{Out: int64(k.out)}
	in, n := binary.Uvarint(v)
	if n <= 0 || len(v) < n+1 {
		return p, fmt.Errorf("%w: %v", errCorrupt, k)
	}
	p.In, p.Member = int64(in), v[n] == 1
	v = v[n+1:]
	l, n1 := binary.Uvarint(v)
	ns, n2 := binary.Uvarint(v[max(n1, 0):])
	if n1 <= 0 || n2 <= 0 || uint64(len(v)-n1-n2) < 4*ns || (l+inflate.SumEvery-1)/inflate.SumEvery != ns {
		return p, fmt.Errorf("%w: %v: sums", errCorrupt, k)
	}
	p.Len, v = int64(l), v[n1+n2:]
	p.Sums = make([]uint32, ns)
	for i := range p.Sums {
		p.Sums[i] = binary.LittleEndian.Uint32(v[4*i:])
	}
	v = v[4*ns:]
	if p.Member {
		return p, nil
	}
	c.decOnce.Do(func() { c.dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)) })
	w, err := c.dec.DecodeAll(v, nil)
	if err != nil {
		return p, fmt.Errorf("%w: %v: %v", errCorrupt, k, err)
	}
	p.Window = w
	return p, nil
}

// resumePointer is a Reader that keeps gzip checkpoints.
type resumePointer interface {
	// ResumePoint returns the checkpoint of capture i at or before the
	// decompressed offset off; the zero checkpoint (the file's start)
	// when there is none.
	ResumePoint(ctx context.Context, i int, off int64) (pcapio.GzipCheckpoint, error)
}

// ResumePoint implements resumePointer.
func (s *Store) ResumePoint(ctx context.Context, i int, off int64) (pcapio.GzipCheckpoint, error) {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: resumeKey{uint32(i), 0}.encode(),
		UpperBound: resumeKey{uint32(i), uint64(off) + 1}.encode(),
	})
	if err != nil {
		return pcapio.GzipCheckpoint{}, err
	}
	defer it.Close()
	if !it.Last() {
		return pcapio.GzipCheckpoint{}, it.Error()
	}
	k := resumeKey{uint32(i), binary.BigEndian.Uint64(it.Key()[5:])}
	return s.windows.decode(k, it.Value())
}

// compressedReaderAt reads the decompressed bytes of a compressed
// capture at its records' offsets: a seekable zstd file through its seek
// table; a gzip file, or a zstd file of several frames, from the
// index's checkpoint before each (from the start for one frame, or a
// capture indexed before checkpoints were kept). It returns a nil
// ReaderAt when r keeps no checkpoints (a scan): the capture is then
// read sequentially. closer, if not nil, releases a decompressor.
func compressedReaderAt(ctx context.Context, r Reader, ci int, f *os.File, path, compression string) (ra io.ReaderAt, closer io.Closer, err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if compression == "zstd" && pcapio.IsSeekable(f, size) {
		sr, err := pcapio.OpenSeekable(f, size, path)
		return sr, nil, err
	}
	rp, ok := r.(resumePointer)
	if !ok {
		return nil, nil, nil
	}
	find := func(off int64) (pcapio.GzipCheckpoint, error) { return rp.ResumePoint(ctx, ci, off) }
	switch compression {
	case "gzip":
		return pcapio.NewGzipReaderAt(f, size, find, GzipEvery), nil, nil
	case "zstd":
		zr := pcapio.NewZstdReaderAt(f, size, find, GzipEvery)
		return zr, zr, nil
	}
	return nil, nil, nil
}
