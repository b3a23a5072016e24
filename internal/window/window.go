// Package window serves io.ReaderAt from a source that can only produce
// its bytes a piece at a time, such as a decompressor: the piece last
// produced is the window, and reads copy out of it until they need an
// offset it does not hold.
package window

// Window is the piece of a source last produced: Buf holds the bytes
// from offset At on.
type Window struct {
	Buf []byte
	At  int64
}

// End is the offset just past the window.
func (w *Window) End() int64 { return w.At + int64(len(w.Buf)) }

// ReadAt fills p with the bytes from offset off on. For each offset the
// window does not hold it calls next, which must move the window to hold
// that offset or fail; its error is returned with the count copied so far.
func (w *Window) ReadAt(p []byte, off int64, next func(at int64) error) (int, error) {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= w.At && at < w.End() {
			n += copy(p[n:], w.Buf[at-w.At:])
			continue
		}
		if err := next(at); err != nil {
			return n, err
		}
	}
	return n, nil
}
