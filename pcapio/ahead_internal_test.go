package pcapio

import (
	"errors"
	"io"
	"testing"
)

type stuckReader struct{ calls int }

func (s *stuckReader) Read([]byte) (int, error) { s.calls++; return 0, nil }

// A decompressor that returns nothing and no error does not hang the
// goroutine reading ahead: it gives up as bufio does.
func TestReadFullNoProgress(t *testing.T) {
	s := &stuckReader{}
	n, err := readFull(s, make([]byte, 16))
	if n != 0 || !errors.Is(err, io.ErrNoProgress) || s.calls != 100 {
		t.Fatalf("read %d, %v after %d calls; want 0, io.ErrNoProgress after 100", n, err, s.calls)
	}
}
