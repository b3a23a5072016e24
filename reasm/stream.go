package reasm

import (
	"slices"
	"sort"

	"github.com/pcapflow/pcapflow/pcapio"
)

// recentBytes is how much delivered data a stream keeps to compare with
// retransmissions (conflicting copies are counted in ConflictBytes).
const recentBytes = 4 << 10

// seg is a buffered out-of-order range. A seg without data stands for
// bytes known to be missing (cut off by the snaplen).
type seg struct {
	start   uint64
	n       int
	data    []byte
	ts      int64
	missing bool
}

func (s *seg) end() uint64 { return s.start + uint64(s.n) }

// segOverhead is what a buffered range costs besides its bytes (the seg
// and the allocation of its copy). It is charged to the buffer limits so
// that many tiny segments cannot hold more memory than MaxBuffer allows.
const segOverhead = 64

// cost is what a buffered range counts against MaxBuffer and the Budget.
func (s *seg) cost() int {
	if s.missing {
		return segOverhead
	}
	return segOverhead + s.n
}

// maxSegs bounds the number of buffered ranges of one direction: MaxBuffer
// of full-size segments fits (4 MiB holds 2900 segments of 1448 bytes),
// while a stream of tiny segments, each inserted in front of the others,
// costs at most maxSegs moved ranges per segment instead of a quadratic
// walk over millions.
func (s *Stream) maxSegs() int { return max(s.pol.MaxBuffer/512, 16) }

// Stream reassembles one direction of a TCP connection. Feed it the
// direction's segments in capture order with Segment, then call Close.
// It is not safe for concurrent use.
type Stream struct {
	pol        Policy
	sink       Sink
	init       bool
	isn        uint32 // the sequence number just before the first data byte
	next       uint64 // offset of the next byte to deliver (the first data byte is 1)
	high       uint64 // the highest offset seen (>= next): sequence numbers are read relative to it
	ooo        []seg  // buffered ranges, sorted and disjoint
	buffered   int
	fin        bool
	finAt      uint64
	done       bool
	recent     []byte // the last bytes delivered, ending at next
	pendingGap uint64 // skipped bytes not yet reported to a GapSink
	stats      Stats
	err        error
	lastTS     int64
	// OnGap, when set, is told of every hole given up: n bytes missing
	// at stream offset off (the first data byte is 1), whatever the gap
	// policy makes of them.
	OnGap func(off, n uint64)
}

// NewStream returns a stream that delivers to sink.
func NewStream(pol Policy, sink Sink) *Stream {
	if pol.MaxBuffer == 0 {
		pol.MaxBuffer = 4 << 20
	}
	return &Stream{pol: pol, sink: sink}
}

// Stats reports the counters so far.
func (s *Stream) Stats() Stats { return s.stats }

// Err is the first error the sink returned.
func (s *Stream) Err() error { return s.err }

// Done reports whether the direction has ended (FIN reached, RST, or a
// gap with GapStop).
func (s *Stream) Done() bool { return s.done }

// abs maps a sequence number to a stream offset: the one within 2 GiB of
// the highest offset seen. (Relative to the next byte to deliver, a
// capture that misses gigabytes of a transfer would read later data as
// old.)
func (s *Stream) abs(seq uint32) int64 {
	return int64(s.high) + int64(int32(seq-(s.isn+uint32(s.high))))
}

// Packet feeds one decoded TCP segment: p must have a TCP header;
// payload is the captured part of its payload.
func (s *Stream) Packet(ts int64, p *pcapio.Packet, payload []byte) {
	s.Segment(ts, p.Seq, p.TCPFlags, payload, p.PayloadLen)
}

// Segment feeds one segment: its sequence number, TCP flags, the
// captured payload and the payload length per the IP header (larger than
// len(payload) when the snaplen cut it).
func (s *Stream) Segment(ts int64, seq uint32, flags uint8, payload []byte, length int) {
	if s.err != nil {
		return
	}
	syn := flags&pcapio.TCPSyn != 0
	if syn && s.init && s.stats.Delivered == 0 && len(s.ooo) == 0 && s.stats.Gaps == 0 {
		// The first SYN after packets that carried no data (a stray RST
		// or FIN seen first): it sets the initial sequence number.
		s.init, s.fin, s.done = false, false, false
	}
	if s.done {
		// After the FIN: bytes already delivered are retransmissions;
		// bytes beyond the FIN are not data.
		if s.fin && length > 0 && !syn {
			if a := s.abs(seq); a < int64(s.next) {
				s.stats.RetransBytes += uint64(min(int64(s.next)-max(a, 0), int64(length)))
			}
		}
		return
	}
	s.lastTS = ts
	if !s.init {
		s.init = true
		s.isn = seq
		if !syn {
			s.isn = seq - 1
		}
		s.next, s.high = 1, 1
	}
	start := seq
	if syn {
		start++
	}
	a := s.abs(start)
	if e := a + int64(length); e > int64(s.high) {
		s.high = uint64(e)
	}
	if length > 0 {
		s.stats.Segments++
		// A keep-alive probe: one byte (or none) just below the next
		// expected byte. It is not data and never overwrites data.
		if length <= 1 && a == int64(s.next)-1 {
			length, payload = 0, nil
		} else {
			s.add(a, payload, length, ts)
		}
	}
	if flags&pcapio.TCPFin != 0 && !s.fin {
		s.fin = true
		s.finAt = uint64(max(a+int64(length), 0))
	}
	s.drain()
	if flags&pcapio.TCPRst != 0 {
		// A reset flushes what waits for holes that can no longer fill,
		// but does not end the direction: data an endpoint accepted
		// after a reset it ignored (out of window, an evasion attempt)
		// is still data, as tshark and tcpflow show it.
		s.stats.Resets++
		for len(s.ooo) > 0 && !s.done && s.err == nil {
			s.giveUpHole()
			s.drain()
		}
	}
	if s.fin && s.next >= s.finAt {
		s.done = true
		s.release()
	}
}

// add places a segment's bytes [a, a+length), of which the first
// len(data) were captured.
func (s *Stream) add(a int64, data []byte, length int, ts int64) {
	if len(data) > length {
		data = data[:length]
	}
	if cut := length - len(data); cut > 0 {
		// Bytes the snaplen cut off: missing, unless they were seen before.
		lo, hi := max(a+int64(len(data)), 0), max(a+int64(length), 0)
		if lo < int64(s.next) {
			s.stats.RetransBytes += uint64(min(hi, int64(s.next)) - lo)
			lo = int64(s.next)
		}
		if lo < hi {
			s.insert(seg{start: uint64(lo), n: int(hi - lo), ts: ts, missing: true})
		}
	}
	if a < 0 { // before the stream's first byte: data of an earlier life
		if int(-a) >= len(data) {
			s.stats.RetransBytes += uint64(len(data))
			return
		}
		data = data[-a:]
		a = 0
	}
	if len(data) == 0 {
		return
	}
	end := uint64(a) + uint64(len(data))
	if end <= s.next { // all delivered already
		s.compareDelivered(uint64(a), data)
		s.stats.RetransBytes += uint64(len(data))
		return
	}
	if uint64(a) < s.next { // the head was delivered already
		head := s.next - uint64(a)
		s.compareDelivered(uint64(a), data[:head])
		s.stats.RetransBytes += head
		data = data[head:]
		a = int64(s.next)
	}
	if uint64(a) == s.next && len(s.ooo) == 0 {
		s.deliver(ts, data) // the common case: in order, nothing buffered
		return
	}
	s.insert(seg{start: uint64(a), n: len(data), data: data, ts: ts})
}

// compareDelivered counts bytes of a retransmission that differ from what
// was delivered, as far as the recent window reaches.
func (s *Stream) compareDelivered(a uint64, data []byte) {
	lo := s.next - uint64(len(s.recent))
	for i, c := range data {
		if p := a + uint64(i); p >= lo && p < s.next && s.recent[p-lo] != c {
			s.stats.ConflictBytes++
		}
	}
}

// insert adds a range to the buffer, resolving overlaps with buffered
// ranges by the policy. Data is copied.
func (s *Stream) insert(n seg) {
	// Only the buffered ranges in [i, j) can overlap n: the buffer is
	// sorted and disjoint, so they are found by binary search, and the
	// common case (n lies past everything buffered) costs nothing more.
	i := sort.Search(len(s.ooo), func(k int) bool { return s.ooo[k].end() > n.start })
	j := i
	for j < len(s.ooo) && s.ooo[j].start < n.end() {
		j++
	}
	var out []seg
	pieces := []seg{n}
	for _, old := range s.ooo[i:j] {
		if len(pieces) == 0 || old.end() <= pieces[0].start || old.start >= pieces[len(pieces)-1].end() {
			continue
		}
		var rest []seg
		for _, p := range pieces {
			lo, hi := max(p.start, old.start), min(p.end(), old.end())
			if lo >= hi {
				rest = append(rest, p)
				continue
			}
			// [lo, hi) arrives twice.
			ov := int(hi - lo)
			s.stats.RetransBytes += uint64(ov)
			if !p.missing && !old.missing {
				pd := p.data[lo-p.start : hi-p.start]
				od := old.data[lo-old.start : hi-old.start]
				for i := range pd {
					if pd[i] != od[i] {
						s.stats.ConflictBytes++
					}
				}
				if s.pol.Overlap == OverlapLast {
					copy(od, pd) // the old range keeps its place with the new bytes
				}
			}
			if p.start < lo {
				rest = append(rest, sub(p, p.start, lo))
			}
			if hi < p.end() {
				rest = append(rest, sub(p, hi, p.end()))
			}
		}
		pieces = rest
	}
	for _, p := range pieces {
		if !p.missing {
			p.data = append([]byte(nil), p.data...)
		}
		s.buffered += p.cost()
		if s.pol.Budget != nil {
			s.pol.Budget.used += p.cost()
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return
	}
	s.ooo = slices.Insert(s.ooo, i, out...)
	sortSegs(s.ooo[i : j+len(out)])
	for s.buffered > s.pol.MaxBuffer || len(s.ooo) > s.maxSegs() || (s.pol.Budget != nil && s.pol.Budget.used > s.pol.Budget.max() && s.buffered > 0) {
		if s.pol.Budget != nil && s.buffered <= s.pol.MaxBuffer {
			s.pol.Budget.Hits++
		}
		s.stats.BufferHits++
		if !s.giveUpHole() {
			break
		}
		s.drain()
		if s.done {
			break
		}
	}
}

func sub(p seg, lo, hi uint64) seg {
	q := seg{start: lo, n: int(hi - lo), ts: p.ts, missing: p.missing}
	if !p.missing {
		q.data = p.data[lo-p.start : hi-p.start]
	}
	return q
}

func sortSegs(ss []seg) {
	for i := 1; i < len(ss); i++ { // few, nearly sorted: insertion sort
		for j := i; j > 0 && ss[j].start < ss[j-1].start; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// drain delivers buffered ranges that have become contiguous.
func (s *Stream) drain() {
	for len(s.ooo) > 0 && s.ooo[0].start <= s.next && !s.done {
		g := s.ooo[0]
		s.ooo = s.ooo[1:]
		s.buffered -= g.cost()
		if s.pol.Budget != nil {
			s.pol.Budget.used -= g.cost()
		}
		if g.end() <= s.next {
			continue
		}
		from := s.next - g.start
		if g.missing {
			s.gap(g.ts, g.end()-s.next)
			continue
		}
		s.deliver(g.ts, g.data[from:])
	}
}

// giveUpHole declares the hole before the first buffered range a gap.
func (s *Stream) giveUpHole() bool {
	if len(s.ooo) == 0 {
		return false
	}
	if h := s.ooo[0].start; h > s.next {
		s.gap(s.ooo[0].ts, h-s.next)
	}
	return true
}

// gap gives up n missing bytes at next.
func (s *Stream) gap(ts int64, n uint64) {
	defer s.endAtFIN()
	if s.fin && s.next+n > s.finAt { // past the FIN is neither data nor missing
		n = s.finAt - min(s.next, s.finAt)
	}
	if n == 0 {
		return
	}
	s.stats.Gaps++
	s.stats.MissingBytes += n
	if s.OnGap != nil {
		s.OnGap(s.next, n)
	}
	// Whatever a hole becomes, its bytes were never received: a late copy
	// of them is compared with nothing, not with filler zeros.
	defer func() { s.recent = s.recent[:0] }()
	switch s.pol.Gaps {
	case GapStop:
		s.done = true
		s.release()
	case GapZero:
		if zs, ok := s.sink.(ZeroSink); ok {
			if s.err != nil {
				return
			}
			s.reportGap(ts)
			if s.err = zs.Zeros(ts, n); s.err != nil {
				return
			}
			s.next += n
			s.stats.Delivered += n
			return
		}
		fillZeros(n, func(z []byte) error { s.deliver(ts, z); return s.err })
	default:
		// Adjacent holes are reported to a GapSink as one.
		s.pendingGap += n
		s.next += n
	}
}

// endAtFIN ends the direction once the bytes up to its FIN are given:
// what is still buffered lies past the FIN and is not data. Zero-filling
// a hole stops at the FIN, so without this a buffered range past it
// stayed unreachable and the loops that give up holes never ended.
func (s *Stream) endAtFIN() {
	if s.fin && s.next >= s.finAt && !s.done {
		s.done = true
		s.release()
	}
}

func (s *Stream) deliver(ts int64, b []byte) {
	if len(b) == 0 || s.err != nil {
		return
	}
	if s.fin && s.next+uint64(len(b)) > s.finAt { // nothing after FIN
		if s.next >= s.finAt {
			return
		}
		b = b[:s.finAt-s.next]
	}
	s.reportGap(ts)
	if s.err != nil {
		return
	}
	if err := s.sink.Data(ts, b); err != nil {
		s.err = err
		return
	}
	s.next += uint64(len(b))
	s.stats.Delivered += uint64(len(b))
	if len(b) >= recentBytes {
		s.recent = append(s.recent[:0], b[len(b)-recentBytes:]...)
	} else {
		if over := len(s.recent) + len(b) - recentBytes; over > 0 {
			s.recent = append(s.recent[:0], s.recent[over:]...)
		}
		s.recent = append(s.recent, b...)
	}
}

func (s *Stream) reportGap(ts int64) {
	if s.pendingGap == 0 {
		return
	}
	if gs, ok := s.sink.(GapSink); ok && s.err == nil {
		s.err = gs.Gap(ts, s.pendingGap)
	}
	s.pendingGap = 0
}

// release frees buffers of a finished direction.
func (s *Stream) release() {
	if s.pol.Budget != nil {
		s.pol.Budget.used -= s.buffered
	}
	s.ooo, s.buffered, s.recent = nil, 0, nil
}

// Close ends the direction: every buffered range is delivered, the holes
// before them becoming gaps.
func (s *Stream) Close() {
	for !s.done && len(s.ooo) > 0 && s.err == nil {
		s.giveUpHole()
		s.drain()
	}
	if !s.done && s.fin && s.finAt > s.next && s.err == nil {
		// The FIN says how long the stream was: what is missing before
		// it was sent and lost from the capture.
		s.gap(s.lastTS, s.finAt-s.next)
	}
	s.reportGap(s.lastTS)
	s.done = true
	s.release()
}
