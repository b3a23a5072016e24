package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"sync"
)

// startHeap is the heap a process grows to before its first garbage
// collection (Go's own first one comes at 4 MB).
const startHeap = 32 << 20

// gcHold keeps the garbage collector off while a process starts. Most
// commands are short: open the index, parse a filter, read a few blocks,
// write a few packets. Opening Pebble and building the filter parser
// take the heap just past Go's first 4 MB goal, and that one collection,
// with the worker goroutines it starts and the pages they touch, was a
// fifth of a one-flow extract (14.6 against 11.5 ms with GOGC=off, in
// one hyperfine run). So collection waits for a 32 MB heap, which a
// short command never reaches; a long one then collects as usual from
// its first cycle on.
//
// The hold ends at the first collection (a cleanup on an object only
// that collection frees) or when release is called, whichever is first.
type gcHold struct {
	once    sync.Once
	percent int
}

// holdGC starts a hold; it returns nil when GOGC or GOMEMLIMIT is set,
// which are the user's to decide.
func holdGC(getenv func(string) string) *gcHold {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return nil
	}
	h := &gcHold{percent: debug.SetGCPercent(-1)}
	debug.SetMemoryLimit(startHeap)
	runtime.AddCleanup(new([64]byte), func(h *gcHold) { h.release() }, h)
	return h
}

// release restores the collector's settings. A memory limit set since
// the hold began (index's --memory-limit) is kept.
func (h *gcHold) release() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		debug.SetGCPercent(h.percent)
		if debug.SetMemoryLimit(-1) == startHeap {
			debug.SetMemoryLimit(math.MaxInt64)
		}
	})
}
