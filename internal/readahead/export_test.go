package readahead

import "os"

// SetAdvise replaces how r advises the system (tests record the ranges).
func (r *Reader) SetAdvise(fn func(f *os.File, off, n int64)) { r.advise = fn }

// SetWindow replaces Window and Step, so that a small file crosses many.
func (r *Reader) SetWindow(window, step int64) { r.window, r.step = window, step }
