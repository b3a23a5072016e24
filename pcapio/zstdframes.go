package pcapio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/window"
)

// ZstdFrame is where one zstd frame of a file starts: its byte offset in
// the file and the offset of its first byte in the decompressed data.
type ZstdFrame struct{ In, Out int64 }

// ErrNoFrameSizes means a zstd frame does not say how much it
// decompresses to, so its successors' offsets are not known without
// decompressing.
var ErrNoFrameSizes = errors.New("zstd frame without its content size")

// maxSizelessFrame bounds the frames ZstdFrames decompresses to learn
// their size.
const maxSizelessFrame = 8 << 20

const (
	zstdMagic          = 0xfd2fb528
	zstdSkippableMask  = 0xfffffff0
	zstdSkippableMagic = 0x184d2a50
)

// ZstdFrames walks the frames of the zstd file ra (size bytes long) by
// their headers and block headers, without decompressing, and returns
// where each frame that holds data starts. A frame's decompressed size
// is its Frame_Content_Size; a frame without one (some encoders leave it
// out of small frames, a stream compressed from a pipe has none) is
// decompressed to learn it if it is at most 8 MiB compressed, and is
// ErrNoFrameSizes otherwise. Skippable frames (a seek table, metadata)
// are stepped over. Errors name the byte offset.
func ZstdFrames(ra io.ReaderAt, size int64) ([]ZstdFrame, error) {
	var frames []ZstdFrame
	var dec *zstd.Decoder
	defer func() {
		if dec != nil {
			dec.Close()
		}
	}()
	var at, out int64
	for at < size {
		fr, err := walkZstdFrame(ra, at, size)
		if err != nil {
			return nil, err
		}
		if fr.skippable {
			at = fr.end
			continue
		}
		fcs := fr.size
		if fcs < 0 {
			// No size in the header: a small frame is decompressed to
			// learn it.
			if fr.end-at > maxSizelessFrame {
				return nil, fmt.Errorf("byte %d: %w", at, ErrNoFrameSizes)
			}
			if dec == nil {
				if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20)); err != nil {
					return nil, err
				}
			}
			d, err := decodeZstdFrame(ra, dec, at, fr.end, nil)
			if err != nil {
				return nil, err
			}
			fcs = int64(len(d))
		}
		if fcs > 0 {
			frames = append(frames, ZstdFrame{In: at, Out: out})
			out += fcs
		}
		at = fr.end
	}
	return frames, nil
}

// zstdFrameInfo is one frame as its headers describe it.
type zstdFrameInfo struct {
	end       int64 // offset just past the frame
	size      int64 // decompressed size, -1 when the header does not say
	skippable bool
}

// walkZstdFrame reads the frame at byte at by its header and block
// headers.
func walkZstdFrame(ra io.ReaderAt, at, size int64) (zstdFrameInfo, error) {
	var hdr [18]byte
	read := func(b []byte, off int64) error {
		if _, err := ra.ReadAt(b, off); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("zstd file cut short at byte %d: %w", off, io.ErrUnexpectedEOF)
			}
			return err
		}
		return nil
	}
	if err := read(hdr[:4], at); err != nil {
		return zstdFrameInfo{}, err
	}
	magic := binary.LittleEndian.Uint32(hdr[:4])
	if magic&zstdSkippableMask == zstdSkippableMagic {
		if err := read(hdr[:8], at); err != nil {
			return zstdFrameInfo{}, err
		}
		end := at + 8 + int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if end > size {
			return zstdFrameInfo{}, fmt.Errorf("zstd skippable frame at byte %d cut short: %w", at, io.ErrUnexpectedEOF)
		}
		return zstdFrameInfo{end: end, skippable: true}, nil
	}
	if magic != zstdMagic {
		return zstdFrameInfo{}, fmt.Errorf("byte %d: magic %08x: not a zstd frame", at, magic)
	}
	n := min(int64(len(hdr)), size-at)
	if err := read(hdr[:n], at); err != nil {
		return zstdFrameInfo{}, err
	}
	fhd := hdr[4]
	if fhd&0x08 != 0 {
		return zstdFrameInfo{}, fmt.Errorf("byte %d: zstd frame header with the reserved bit set", at)
	}
	single := fhd&0x20 != 0
	p := 5
	if !single {
		p++ // window descriptor
	}
	p += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	fcsLen := [4]int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcsLen = 1
	}
	if int64(p+fcsLen) > n {
		return zstdFrameInfo{}, fmt.Errorf("zstd frame header cut short at byte %d: %w", at, io.ErrUnexpectedEOF)
	}
	fcs := int64(-1)
	if fcsLen > 0 {
		var v uint64
		for i := fcsLen - 1; i >= 0; i-- {
			v = v<<8 | uint64(hdr[p+i])
		}
		if fcsLen == 2 {
			v += 256
		}
		if v > 1<<62 {
			return zstdFrameInfo{}, fmt.Errorf("byte %d: zstd frame of %d bytes", at, v)
		}
		fcs = int64(v)
	}
	start := at
	at += int64(p + fcsLen)
	// Blocks: a 3-byte header each (last flag, type, size).
	for {
		if err := read(hdr[:3], at); err != nil {
			return zstdFrameInfo{}, err
		}
		bh := uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16
		last, typ, bsize := bh&1 == 1, (bh>>1)&3, int64(bh>>3)
		at += 3
		switch typ {
		case 0, 2: // raw, compressed
			at += bsize
		case 1: // RLE: one byte repeated bsize times
			at++
		default:
			return zstdFrameInfo{}, fmt.Errorf("byte %d: zstd block of the reserved type", at-3)
		}
		if at > size {
			return zstdFrameInfo{}, fmt.Errorf("zstd block at byte %d runs past the end of the file: %w", at, io.ErrUnexpectedEOF)
		}
		if last {
			break
		}
	}
	if fhd&0x04 != 0 {
		at += 4 // content checksum
	}
	if at > size {
		return zstdFrameInfo{}, fmt.Errorf("zstd frame at byte %d cut short at byte %d: %w", start, size, io.ErrUnexpectedEOF)
	}
	return zstdFrameInfo{end: at, size: fcs}, nil
}

// decodeZstdFrame decompresses the whole frame in [at, end) into dst
// (its checksum, if it has one, checked before anything is returned).
func decodeZstdFrame(ra io.ReaderAt, dec *zstd.Decoder, at, end int64, dst []byte) ([]byte, error) {
	raw := make([]byte, end-at)
	if _, err := ra.ReadAt(raw, at); err != nil {
		return nil, fmt.Errorf("zstd frame at byte %d: %w", at, err)
	}
	d, err := dec.DecodeAll(raw, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("zstd frame at byte %d: %w", at, err)
	}
	return d, nil
}

// NewZstdReaderAt reads the decompressed bytes of a zstd capture that
// has several frames at any offset, for a RecordReader: find returns the
// checkpoint (a frame start, Member set, In its bit offset) at or before
// an offset, the zero one for the file's start; every is about their
// spacing. Reads at or just past the previous one go on where it
// stopped. Frames of up to 16 MiB are decompressed whole, so a frame
// with a content checksum is checked before any of its bytes are
// returned; a larger frame (a file `zstd` wrote in one) is streamed,
// and its checksum is checked when it ends. Close releases the decoder.
func NewZstdReaderAt(ra io.ReaderAt, size int64, find func(off int64) (GzipCheckpoint, error), every int64) *ZstdReaderAt {
	return &ZstdReaderAt{ra: ra, size: size, find: find, ahead: every}
}

// maxWholeFrame bounds the frames ZstdReaderAt decompresses whole.
const maxWholeFrame = 16 << 20

// ZstdReaderAt is NewZstdReaderAt's reader. Its methods may be called
// concurrently but take turns.
type ZstdReaderAt struct {
	mu     sync.Mutex
	ra     io.ReaderAt
	size   int64
	find   func(off int64) (GzipCheckpoint, error)
	ahead  int64
	dec    *zstd.Decoder
	live   bool          // positioned: in and pos say where
	stream bool          // dec streams from a large frame on
	in     int64         // file offset of the next frame (when not streaming)
	pos    int64         // decompressed offset of the next byte
	win    window.Window // the last bytes decompressed
}

// ReadAt implements io.ReaderAt.
func (z *ZstdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.win.ReadAt(p, off, z.next)
}

// next makes buf hold the decompressed bytes at offset at.
func (z *ZstdReaderAt) next(at int64) error {
	if z.dec == nil {
		var err error
		if z.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20)); err != nil {
			return err
		}
	}
	if !z.live || at < z.pos || at-z.pos > z.ahead {
		c, err := z.find(at)
		if err != nil {
			return err
		}
		if c.Out > at || c.In/8 > z.size {
			return fmt.Errorf("the checkpoint for decompressed offset %d lies at %d: %w", at, c.Out, ErrBadBlock)
		}
		if !z.live || c.Out > z.pos || at < z.pos {
			z.live, z.stream, z.in, z.pos, z.win.Buf = true, false, c.In/8, c.Out, z.win.Buf[:0]
		}
	}
	for {
		if err := z.fill(); err != nil {
			z.live = false
			return err
		}
		if at < z.pos {
			return nil
		}
	}
}

// fill decompresses the next frame, or the next 64 KiB of a large one.
func (z *ZstdReaderAt) fill() error {
	z.win.At = z.pos
	if z.stream {
		z.win.Buf = slices.Grow(z.win.Buf[:0], 64<<10)[:64<<10]
		m, err := io.ReadFull(z.dec, z.win.Buf)
		z.win.Buf = z.win.Buf[:m]
		z.pos += int64(m)
		if m == 0 {
			if err == io.ErrUnexpectedEOF || err == nil {
				err = io.EOF
			}
			return err
		}
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return err
		}
		return nil
	}
	for {
		if z.in >= z.size {
			z.win.Buf = z.win.Buf[:0]
			return io.EOF
		}
		fr, err := walkZstdFrame(z.ra, z.in, z.size)
		if err != nil {
			return err
		}
		if fr.skippable {
			z.in = fr.end
			continue
		}
		if fr.end-z.in > maxWholeFrame || fr.size > 4*maxWholeFrame {
			z.stream = true
			if err := z.dec.Reset(io.NewSectionReader(z.ra, z.in, z.size-z.in)); err != nil {
				return fmt.Errorf("zstd frame at byte %d: %w", z.in, err)
			}
			return z.fill()
		}
		d, err := decodeZstdFrame(z.ra, z.dec, z.in, fr.end, z.win.Buf)
		if err != nil {
			return err
		}
		z.win.Buf, z.in = d, fr.end
		z.pos += int64(len(d))
		if len(d) > 0 {
			return nil
		}
	}
}

// Close releases the decoder.
func (z *ZstdReaderAt) Close() error {
	if z.dec != nil {
		z.dec.Close()
		z.dec = nil
	}
	return nil
}
