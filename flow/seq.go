package flow

import "github.com/pcapflow/pcapflow/pcapio"

// seqTrack follows one TCP direction's sequence space without its bytes,
// to count what reassembly would find: bytes never seen (MissingBytes),
// bytes seen again (RetransBytes), and retransmitted bytes that came in a
// segment that also carried new bytes (OverlapBytes: a partial overlap,
// the shape of overlap evasions). It mirrors reasm.Stream's reading of
// sequence numbers, so a flow's counters match what `streams` reports.
type seqTrack struct {
	base uint32 // sequence number just before the first data byte
	init bool
	// Spans seen beyond next live in Table.spans, keyed by flow.
	hasSpans bool
	fin      bool
	next     uint64 // end of the contiguous range seen from offset 1
	high     uint64 // highest offset seen
	finAt    uint64 // offset of the FIN: nothing beyond it is data
}

type span struct{ lo, hi uint64 }

func (s *seqTrack) abs(seq uint32) int64 {
	return int64(s.high) + int64(int32(seq-(s.base+uint32(s.high))))
}

// trackSeq accounts one TCP segment of flow fi.
func (t *Table) trackSeq(fi int32, f *Flow, p *pcapio.Packet) {
	s := &f.seq
	syn := p.TCPFlags&pcapio.TCPSyn != 0
	if syn && s.init && s.next == 1 && !s.hasSpans && f.MissingBytes == 0 {
		s.init = false // the SYN after data-less packets sets the ISN
	}
	if !s.init {
		s.init = true
		s.base = p.Seq
		if !syn {
			s.base--
		}
		s.next, s.high = 1, 1
	}
	start := p.Seq
	if syn {
		start++
	}
	a := s.abs(start)
	n := int64(p.PayloadLen)
	if e := a + n; e > int64(s.high) {
		s.high = uint64(e)
	}
	if n > 0 && !(n <= 1 && a == int64(s.next)-1) { // keep-alive probes are not data
		if a < 0 {
			old := min(-a, n)
			f.RetransBytes += uint64(old)
			a, n = 0, n-old
		}
		if s.fin && uint64(a+n) > s.finAt { // nothing beyond the FIN is data
			n = max(int64(s.finAt)-a, 0)
		}
		if n > 0 {
			lo, hi := uint64(a), uint64(a+n)
			seen := t.covered(fi, s, lo, hi)
			f.RetransBytes += seen
			if seen > 0 && seen < hi-lo {
				f.OverlapBytes += seen
			}
			if cut := int64(p.PayloadLen - max(p.CapturedLen, 0)); cut > 0 && cut <= n {
				// Cut off by the snaplen: missing where not seen before.
				clo := hi - uint64(cut)
				f.MissingBytes += uint64(cut) - t.covered(fi, s, clo, hi)
			}
			t.cover(fi, s, lo, hi)
		}
	}
	if p.TCPFlags&pcapio.TCPFin != 0 && !s.fin {
		s.fin, s.finAt = true, uint64(max(s.abs(start)+int64(p.PayloadLen), 0))
	}
	if p.TCPFlags&pcapio.TCPRst != 0 && s.hasSpans {
		t.giveUpHoles(fi, f, s) // as reassembly does on a reset
	}
}

// covered counts the bytes of [lo, hi) seen before.
func (t *Table) covered(fi int32, s *seqTrack, lo, hi uint64) uint64 {
	var n uint64
	if lo < s.next {
		n += min(hi, s.next) - lo
	}
	if s.hasSpans {
		for _, x := range t.spans[fi] {
			a, b := max(lo, x.lo, s.next), min(hi, x.hi)
			if a < b {
				n += b - a
			}
		}
	}
	return n
}

// cover marks [lo, hi) seen.
func (t *Table) cover(fi int32, s *seqTrack, lo, hi uint64) {
	if hi <= s.next {
		return
	}
	if lo <= s.next && !s.hasSpans {
		s.next = hi
		return
	}
	sp := t.spans[fi]
	sp = append(sp, span{max(lo, s.next), hi})
	// Sort the new span in and merge, then absorb spans reaching next.
	for i := len(sp) - 1; i > 0 && sp[i].lo < sp[i-1].lo; i-- {
		sp[i], sp[i-1] = sp[i-1], sp[i]
	}
	merged := sp[:0]
	for _, x := range sp {
		if k := len(merged); k > 0 && x.lo <= merged[k-1].hi {
			merged[k-1].hi = max(merged[k-1].hi, x.hi)
			continue
		}
		merged = append(merged, x)
	}
	for len(merged) > 0 && merged[0].lo <= s.next {
		s.next = max(s.next, merged[0].hi)
		merged = merged[1:]
	}
	if len(merged) == 0 {
		delete(t.spans, fi)
		s.hasSpans = false
		return
	}
	if t.spans == nil {
		t.spans = map[int32][]span{}
	}
	t.spans[fi] = append([]span(nil), merged...)
	s.hasSpans = true
}

// finishSeq adds to out, a copy of live flow fi, the bytes that would be
// missing if the direction ended now: the holes before the ranges seen
// out of order, and the one before a FIN (the FIN's sequence number says
// how long the stream was, so bytes between the last ones seen and the
// FIN were sent and lost). The live flow is not changed.
func (t *Table) finishSeq(fi int32, out *Flow) {
	s := &out.seq
	next := s.next
	if s.hasSpans {
		for _, x := range t.spans[fi] {
			if lo := s.clip(x.lo); lo > next {
				out.MissingBytes += lo - next
			}
			next = max(next, s.clip(x.hi))
		}
	}
	if s.fin && s.finAt > next {
		out.MissingBytes += s.finAt - next
	}
}

// clip limits an offset to the FIN's: past it is neither data nor
// missing, as reassembly counts it.
func (s *seqTrack) clip(v uint64) uint64 {
	if s.fin {
		return min(v, s.finAt)
	}
	return v
}

// giveUpHoles counts the holes before the ranges seen out of order as
// missing and moves past them. Past the FIN is neither data nor missing,
// as reassembly counts it.
func (t *Table) giveUpHoles(fi int32, f *Flow, s *seqTrack) {
	for _, x := range t.spans[fi] {
		if lo := s.clip(x.lo); lo > s.next {
			f.MissingBytes += lo - s.next
		}
		s.next = max(s.next, s.clip(x.hi))
	}
	delete(t.spans, fi)
	s.hasSpans = false
}
