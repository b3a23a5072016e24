package pcapio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
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
	var hdr [18]byte
	var at, out int64
	read := func(b []byte, off int64) error {
		if _, err := ra.ReadAt(b, off); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("zstd file cut short at byte %d: %w", off, io.ErrUnexpectedEOF)
			}
			return err
		}
		return nil
	}
	for at < size {
		if err := read(hdr[:4], at); err != nil {
			return nil, err
		}
		magic := binary.LittleEndian.Uint32(hdr[:4])
		if magic&zstdSkippableMask == zstdSkippableMagic {
			if err := read(hdr[:8], at); err != nil {
				return nil, err
			}
			at += 8 + int64(binary.LittleEndian.Uint32(hdr[4:8]))
			continue
		}
		if magic != zstdMagic {
			return nil, fmt.Errorf("byte %d: magic %08x: not a zstd frame", at, magic)
		}
		n := min(int64(len(hdr)), size-at)
		if err := read(hdr[:n], at); err != nil {
			return nil, err
		}
		fhd := hdr[4]
		if fhd&0x08 != 0 {
			return nil, fmt.Errorf("byte %d: zstd frame header with the reserved bit set", at)
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
			return nil, fmt.Errorf("zstd frame header cut short at byte %d: %w", at, io.ErrUnexpectedEOF)
		}
		fcs := uint64(0)
		for i := fcsLen - 1; i >= 0; i-- {
			fcs = fcs<<8 | uint64(hdr[p+i])
		}
		if fcsLen == 2 {
			fcs += 256
		}
		start := at
		at += int64(p + fcsLen)
		// Blocks: a 3-byte header each (last flag, type, size).
		for {
			if err := read(hdr[:3], at); err != nil {
				return nil, err
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
				return nil, fmt.Errorf("byte %d: zstd block of the reserved type", at-3)
			}
			if at > size {
				return nil, fmt.Errorf("zstd block at byte %d runs past the end of the file: %w", at, io.ErrUnexpectedEOF)
			}
			if last {
				break
			}
		}
		if fhd&0x04 != 0 {
			at += 4 // content checksum
		}
		if at > size {
			return nil, fmt.Errorf("zstd frame at byte %d cut short at byte %d: %w", start, size, io.ErrUnexpectedEOF)
		}
		if fcsLen == 0 {
			// No size in the header (small frames, streamed ones): a small
			// frame is decompressed to learn it.
			if at-start > maxSizelessFrame {
				return nil, fmt.Errorf("byte %d: %w", start, ErrNoFrameSizes)
			}
			if dec == nil {
				var err error
				if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20)); err != nil {
					return nil, err
				}
				defer dec.Close()
			}
			raw := make([]byte, at-start)
			if err := read(raw, start); err != nil {
				return nil, err
			}
			d, err := dec.DecodeAll(raw, nil)
			if err != nil {
				return nil, fmt.Errorf("zstd frame at byte %d: %w", start, err)
			}
			fcs = uint64(len(d))
		}
		if fcs > 0 {
			frames = append(frames, ZstdFrame{In: start, Out: out})
			out += int64(fcs)
		}
	}
	if at > size {
		return nil, fmt.Errorf("zstd file cut short at byte %d: %w", size, io.ErrUnexpectedEOF)
	}
	return frames, nil
}

// NewZstdReaderAt reads the decompressed bytes of a zstd capture that
// has several frames at any offset, for a RecordReader: find returns the
// checkpoint (a frame start, Member set, In its bit offset) at or before
// an offset, the zero one for the file's start; every is about their
// spacing. Reads at or just past the previous one go on decompressing
// where it stopped. Frames with a content checksum are checked by the
// decoder. Close releases the decoder.
func NewZstdReaderAt(ra io.ReaderAt, size int64, find func(off int64) (GzipCheckpoint, error), every int64) *ZstdReaderAt {
	return &ZstdReaderAt{ra: ra, size: size, find: find, ahead: every, buf: make([]byte, 0, 64<<10)}
}

// ZstdReaderAt is NewZstdReaderAt's reader. Its methods may be called
// concurrently but take turns.
type ZstdReaderAt struct {
	mu    sync.Mutex
	ra    io.ReaderAt
	size  int64
	find  func(off int64) (GzipCheckpoint, error)
	ahead int64
	dec   *zstd.Decoder
	live  bool   // dec reads from a frame start; pos is where it stands
	pos   int64  // decompressed offset of the next byte dec returns
	buf   []byte // the last bytes dec returned
	bufAt int64
}

// ReadAt implements io.ReaderAt.
func (z *ZstdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= z.bufAt && at < z.bufAt+int64(len(z.buf)) {
			n += copy(p[n:], z.buf[at-z.bufAt:])
			continue
		}
		if err := z.next(at); err != nil {
			return n, err
		}
	}
	return n, nil
}

// next makes buf hold the decompressed bytes at offset at.
func (z *ZstdReaderAt) next(at int64) error {
	if !z.live || at < z.pos || at-z.pos > z.ahead {
		c, err := z.find(at)
		if err != nil {
			return err
		}
		if c.Out > at || c.In/8 > z.size {
			return fmt.Errorf("the checkpoint for decompressed offset %d lies at %d: %w", at, c.Out, ErrBadBlock)
		}
		if !z.live || c.Out > z.pos || at < z.pos {
			if z.dec == nil {
				if z.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
					return err
				}
			}
			if err := z.dec.Reset(io.NewSectionReader(z.ra, c.In/8, z.size-c.In/8)); err != nil {
				return fmt.Errorf("zstd frame at byte %d: %w", c.In/8, err)
			}
			z.live, z.pos, z.buf = true, c.Out, z.buf[:0]
		}
	}
	for {
		z.buf = z.buf[:cap(z.buf)]
		m, err := io.ReadFull(z.dec, z.buf)
		z.buf, z.bufAt = z.buf[:m], z.pos
		z.pos += int64(m)
		if m == 0 {
			z.live = false
			if err == io.ErrUnexpectedEOF || err == nil {
				err = io.EOF
			}
			return err
		}
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			z.live = false
			return err
		}
		if at < z.pos {
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
