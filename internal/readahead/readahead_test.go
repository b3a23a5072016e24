package readahead_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcapflow/pcapflow/internal/readahead"
)

// TestReader reads a file from an offset in reads of every size: the
// bytes are the file's, and the advised ranges follow one another from
// that offset, each byte once, never more than Window past the reader.
func TestReader(t *testing.T) {
	const window, step = 96 << 10, 16 << 10
	const size = 3*window + 12345
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "cap")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		start int64
		chunk int // 0: random sizes
	}{
		{"from 0, 32 KiB reads", 0, 32 << 10},
		{"from an offset, odd reads", 7777, 0},
		{"small reads", window - 3, 93},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Seek(tc.start, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			r := readahead.New(f)
			r.SetWindow(window, step)
			next, pos := tc.start, tc.start
			r.SetAdvise(func(_ *os.File, off, n int64) {
				if off != next {
					t.Fatalf("advice from %d, want %d (where the last ended)", off, next)
				}
				if end := off + n; end > pos+window || end <= pos {
					t.Fatalf("advice to %d with the reader at %d", end, pos)
				}
				next = off + n
			})
			var got bytes.Buffer
			buf := make([]byte, 40<<10)
			limit := int64(size)
			for pos < limit {
				n := tc.chunk
				if n == 0 {
					n = 1 + rng.IntN(len(buf))
				}
				m, err := r.Read(buf[:min(n, int(limit-pos))])
				got.Write(buf[:m])
				pos += int64(m)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Bytes(), data[tc.start:pos]) {
				t.Fatalf("read %d bytes that are not the file's", got.Len())
			}
			if next <= tc.start {
				t.Fatal("no advice given")
			}
		})
	}
}
