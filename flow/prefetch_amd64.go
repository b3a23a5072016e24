package flow

// prefetch asks the core to bring the cache line at addr in, without
// waiting for it (PREFETCHT0): unlike a load, it never holds up the
// instructions after it. An address that is not mapped is ignored.
func prefetch(addr uintptr)
