package window

import (
	"bytes"
	"errors"
	"testing"
)

// A source of 100 bytes served in windows of 7: every read, across
// window edges and at the end, returns the source's bytes.
func TestReadAt(t *testing.T) {
	src := make([]byte, 100)
	for i := range src {
		src[i] = byte(i * 3)
	}
	errEnd := errors.New("end")
	var w Window
	calls := 0
	next := func(at int64) error {
		calls++
		if at >= int64(len(src)) {
			return errEnd
		}
		start := at / 7 * 7
		w.Buf, w.At = src[start:min(start+7, int64(len(src)))], start
		return nil
	}
	for _, tc := range []struct {
		off, n int64
		err    error
	}{{0, 1, nil}, {3, 20, nil}, {6, 2, nil}, {93, 7, nil}, {95, 10, errEnd}, {0, 100, nil}} {
		p := make([]byte, tc.n)
		n, err := w.ReadAt(p, tc.off, next)
		want := src[tc.off:min(tc.off+tc.n, int64(len(src)))]
		if !errors.Is(err, tc.err) || !bytes.Equal(p[:n], want) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes, %v", tc.n, tc.off, n, err, len(want), tc.err)
		}
	}
	if calls == 0 {
		t.Error("next never called")
	}
}
