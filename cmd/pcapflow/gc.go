package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// startHeap is the heap a process grows to before its first garbage
// collection (Go's own first one comes at 4 MB).
const startHeap = 32 << 20

// gcHold keeps the garbage collector off while a process starts. Most
// commands are short: open the index, parse a filter, read a few blocks,
// write a few packets. Opening Pebble and building the filter parser
// take the heap just past Go's first 4 MB goal, and that one collection,
// with the worker goroutines it starts and the pages they touch, was a
// sixth of a one-flow extract (perf stat -r 40, alternated: 14.8 and
// 14.2 ms with it, 12.1 and 11.9 without; 1,530 against 1,270 page
// faults). So collection waits for a 32 MB heap, which a
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

// floatLimit keeps the soft memory limit set for an index run (base) at
// least a tenth above what is live, checked every 100 ms. A soft limit
// under the live heap makes the collector run without pause, up to half
// the CPU: an archive with more live flows than the default allows for
// would index at half speed instead of using the memory it needs.
func floatLimit(base int64) (stop func()) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := base
	return every(100*time.Millisecond, func(float64) {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		if l := limitFor(base, int64(s[0].Value.Uint64())); l > set || l < set-set/16 {
			set = l
			debug.SetMemoryLimit(l)
		}
	})
}

// limitFor is the soft limit for a live heap of live bytes: base, or a
// tenth above live when that is more.
func limitFor(base, live int64) int64 { return max(base, live+live/10) }
