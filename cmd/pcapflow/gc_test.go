package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestGCHold(t *testing.T) {
	noEnv := func(string) string { return "" }
	restore := func(percent int, limit int64) {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
	defer restore(debug.SetGCPercent(-1), debug.SetMemoryLimit(-1))
	restore(100, math.MaxInt64)

	if h := holdGC(func(k string) string {
		if k == "GOGC" {
			return "200"
		}
		return ""
	}); h != nil {
		t.Errorf("GOGC set: hold %v, want none", h)
	}

	// Released by hand, with a limit set meanwhile (index's).
	h := holdGC(noEnv)
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("held: GC percent %d, want -1 (off)", p)
	}
	if l := debug.SetMemoryLimit(-1); l != startHeap {
		t.Errorf("held: memory limit %d, want %d", l, startHeap)
	}
	debug.SetMemoryLimit(300 << 20)
	h.release()
	h.release() // a second release (the cleanup's) changes nothing
	if p := debug.SetGCPercent(-1); p != 100 {
		t.Errorf("released: GC percent %d, want 100", p)
	}
	debug.SetGCPercent(100)
	if l := debug.SetMemoryLimit(-1); l != 300<<20 {
		t.Errorf("released: memory limit %d, want the one set since (300M)", l)
	}

	// Released by the first collection.
	debug.SetMemoryLimit(math.MaxInt64)
	h = holdGC(noEnv)
	for i := 0; i < 1000 && debug.SetMemoryLimit(-1) == startHeap; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("after collections: memory limit %d, want none", l)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("after collections: GC percent %d, want 100", p)
	}
}

func TestLimitFor(t *testing.T) {
	const base = 260 << 20
	for _, tc := range []struct{ live, want int64 }{
		{0, base},
		{200 << 20, base},
		{236 << 20, base},             // a tenth above is still under base
		{300 << 20, 330 << 20},        // over base: a tenth above live
		{2 << 30, 2<<30 + (2<<30)/10}, // a big archive's live flows
	} {
		if got := limitFor(base, tc.live); got != tc.want {
			t.Errorf("limitFor(%d MB live) = %d MB, want %d MB", tc.live>>20, got>>20, tc.want>>20)
		}
	}
}
