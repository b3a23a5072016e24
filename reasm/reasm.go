// Package reasm reassembles TCP byte streams, one direction at a time,
// with an explicit policy (docs/reassembly.md):
//
//   - bytes are delivered in sequence order, each at most once;
//   - retransmitted and duplicate bytes are dropped and counted
//     (RetransBytes); where a second copy differs from the first, the
//     difference is counted too (ConflictBytes) and, by default, the first
//     copy wins (Suricata's and Windows' policy; OverlapLast keeps the
//     last copy of bytes not yet delivered);
//   - out-of-order segments wait in a bounded buffer;
//   - a hole that can no longer fill (the stream ended, the other side
//     acknowledged past it, or the buffer is full) is a gap: skipped and
//     counted (MissingBytes), filled with zeros, or the end of the stream;
//   - sequence numbers wrap; a stream seen without its SYN starts at the
//     first byte seen; SYN data is data; FIN ends the direction, RST
//     flushes what waits for holes;
//   - payload lengths come from the IP header; bytes cut off by the
//     snaplen are missing, never invented.
package reasm

import (
	"fmt"
	"slices"
	"strings"
)

// OverlapPolicy says which copy of twice-received bytes is kept.
type OverlapPolicy uint8

const (
	OverlapFirst OverlapPolicy = iota // the first copy received wins
	OverlapLast                       // the last copy received before delivery wins
)

// GapPolicy says what a hole that will not fill becomes.
type GapPolicy uint8

const (
	GapSkip GapPolicy = iota // skip it, count it as missing
	GapZero                  // fill it with zeros (tcpflow's behaviour), count it as missing
	GapStop                  // end the stream there (pcap_flow's behaviour)
)

// ParseGapPolicy reads "skip", "zero" or "stop".
func ParseGapPolicy(s string) (GapPolicy, error) {
	return parsePolicy("gap", s, []string{"skip", "zero", "stop"}, []GapPolicy{GapSkip, GapZero, GapStop})
}

// ParseOverlapPolicy reads "first" or "last".
func ParseOverlapPolicy(s string) (OverlapPolicy, error) {
	return parsePolicy("overlap", s, []string{"first", "last"}, []OverlapPolicy{OverlapFirst, OverlapLast})
}

// parsePolicy is the value of the name s among names ("" is the first).
func parsePolicy[P any](what, s string, names []string, values []P) (P, error) {
	if s == "" {
		return values[0], nil
	}
	if i := slices.Index(names, s); i >= 0 {
		return values[i], nil
	}
	var none P
	last := len(names) - 1
	return none, fmt.Errorf("%s policy %q: want %s or %s", what, s, strings.Join(names[:last], ", "), names[last])
}

// Policy configures reassembly.
type Policy struct {
	Overlap OverlapPolicy
	Gaps    GapPolicy
	// MaxBuffer bounds the out-of-order bytes one direction holds
	// (default 4 MiB). When it is exceeded the first hole becomes a gap.
	MaxBuffer int
	// Budget, when set, bounds the out-of-order bytes of all directions
	// sharing it.
	Budget *Budget
}

// Budget is a memory allowance shared by many streams.
type Budget struct {
	Max  int // bytes; 0 means 256 MiB
	used int
	Hits int // times a stream had to give up a hole because the budget was spent
}

func (b *Budget) max() int {
	if b.Max == 0 {
		return 256 << 20
	}
	return b.Max
}

// Stats counts what happened to a direction's bytes.
type Stats struct {
	Delivered     uint64 // bytes handed to the sink (zeros of filled gaps included)
	MissingBytes  uint64 // bytes never seen: gaps, and payload cut off by the snaplen
	RetransBytes  uint64 // bytes received again after their first copy
	ConflictBytes uint64 // of those, bytes whose later copy differed from the first
	Gaps          int    // holes given up
	BufferHits    int    // holes given up because a buffer limit was reached
	Segments      int    // segments with payload
	Resets        int    // RST segments
}

// Sink receives a direction's bytes in order. ts is the timestamp of the
// packet that completed the delivered range. Data is valid only during
// the call.
type Sink interface {
	Data(ts int64, b []byte) error
}

// GapSink is implemented by sinks that want to know where bytes were
// skipped (GapSkip): n bytes are missing before the next Data.
type GapSink interface {
	Gap(ts int64, n uint64) error
}

// ZeroSink is implemented by sinks that can take n zero bytes without
// being handed them (GapZero): a file extends itself sparsely, as
// tcpflow's seek past a hole does, so that one stray segment a gigabyte
// ahead costs no gigabyte of writes.
type ZeroSink interface {
	Zeros(ts int64, n uint64) error
}

// fillZeros hands fn n zero bytes, 4 KiB at a time, until fn fails.
func fillZeros(n uint64, fn func([]byte) error) {
	var zeros [4096]byte
	for n > 0 {
		k := min(n, uint64(len(zeros)))
		if fn(zeros[:k]) != nil {
			return
		}
		n -= k
	}
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ts int64, b []byte) error

func (f SinkFunc) Data(ts int64, b []byte) error { return f(ts, b) }
