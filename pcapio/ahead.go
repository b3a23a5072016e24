package pcapio

import (
	"bytes"
	"io"
	"slices"
	"sync"

	"github.com/pcapflow/pcapflow/internal/inflate"
)

// aheadChunks and aheadChunk are the decompressed output a reader that
// decompresses ahead (Reader.DecompressAhead) may hold undelivered: 2
// MiB, a couple of milliseconds of the indexer's work, in 4 MiB of
// buffers. Chunks of 1 MiB rather than 256 or 512 KiB: the 2 GB real
// capture's gzip indexed in 5.71 s against 5.94 and 5.81 (4 rounds in
// turn; 6.16-6.22 s without the goroutine).
const (
	aheadChunks = 2
	aheadChunk  = 1 << 20
)

// ahead runs a decompressor in a goroutine of its own, up to
// aheadChunks chunks ahead of the reader, so that decompressing and
// what the reader does with the output use two cores. What the
// decompressor reports on the side (gzip checkpoints) travels with the
// chunk it was reported in and is passed on, on the reader's goroutine,
// when the reader reaches that chunk; an error comes after the bytes
// decompressed before it, as it would without the goroutine.
type ahead struct {
	full chan aheadOut
	free chan []byte
	done chan struct{} // closed by stop
	wg   sync.WaitGroup
	onCk func(GzipCheckpoint)
	cur  aheadOut
	off  int // of cur.b, delivered
	once sync.Once
}

// aheadOut is a chunk of output, the checkpoints reported while it was
// decompressed, and the error that ended the output after it, if any.
type aheadOut struct {
	b      []byte
	points []GzipCheckpoint
	err    error
}

// newAhead starts decompressing src. If gz is not nil, it is src's gzip
// reader, and its checkpoints (every bytes apart) go to onCk.
func newAhead(src io.Reader, gz *inflate.GzipReader, every int64, onCk func(GzipCheckpoint)) *ahead {
	a := &ahead{full: make(chan aheadOut, aheadChunks), free: make(chan []byte, aheadChunks+2), done: make(chan struct{}), onCk: onCk}
	for range cap(a.free) {
		a.free <- make([]byte, aheadChunk)
	}
	var points []GzipCheckpoint
	if gz != nil && onCk != nil {
		gz.Checkpoints(every, func(p GzipCheckpoint) {
			// The window is valid only during the call; the sums are
			// copied for the same reason.
			p.Window, p.Sums = bytes.Clone(p.Window), slices.Clone(p.Sums)
			points = append(points, p)
		})
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.done:
				return
			}
			n, err := readFull(src, b)
			out := aheadOut{b: b[:n], points: points, err: err}
			points = nil
			select {
			case a.full <- out:
			case <-a.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

// readFull is io.ReadFull keeping the reader's own error (io.EOF at
// the end, whatever was read before it), and giving up, as bufio does,
// on a reader that returns nothing and no error a hundred times.
func readFull(r io.Reader, b []byte) (int, error) {
	n, empty := 0, 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty == 100 {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}

func (a *ahead) Read(p []byte) (int, error) {
	for a.off == len(a.cur.b) {
		if a.cur.err != nil {
			return 0, a.cur.err
		}
		if a.cur.b != nil {
			a.free <- a.cur.b[:cap(a.cur.b)]
		}
		a.cur, a.off = <-a.full, 0
		for _, c := range a.cur.points {
			a.onCk(c)
		}
	}
	n := copy(p, a.cur.b[a.off:])
	a.off += n
	return n, nil
}

// stop ends the goroutine and waits for it: the decompressor is then
// the caller's again (to close).
func (a *ahead) stop() {
	a.once.Do(func() {
		close(a.done)
		a.wg.Wait()
	})
}
