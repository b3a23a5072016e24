package reasm

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"github.com/pcapflow/pcapflow/pcapio"
)

// rec is a Sink recording data and gaps.
type rec struct {
	b    bytes.Buffer
	gaps []uint64
}

func (r *rec) Data(ts int64, b []byte) error { r.b.Write(b); return nil }
func (r *rec) Gap(ts int64, n uint64) error  { r.gaps = append(r.gaps, n); return nil }

// zeroRec is a Sink that takes gap zeros by count (ZeroSink).
type zeroRec struct{ rec }

func (r *zeroRec) Zeros(ts int64, n uint64) error { r.b.Write(make([]byte, n)); return nil }

// step is one segment: flags, sequence number, payload, and optionally a
// wire length larger than the payload (snaplen cut).
type step struct {
	flags uint8
	seq   uint32
	data  string
	wire  int
}

const (
	syn = pcapio.TCPSyn
	ack = pcapio.TCPAck
	psh = pcapio.TCPPsh | pcapio.TCPAck
	fin = pcapio.TCPFin | pcapio.TCPAck
	rst = pcapio.TCPRst
)

func run(pol Policy, steps []step) (*rec, Stats) {
	r := &rec{}
	return r, runInto(pol, r, steps)
}

// runInto feeds the steps to a stream writing into sink.
func runInto(pol Policy, sink Sink, steps []step) Stats {
	s := NewStream(pol, sink)
	for i, st := range steps {
		n := len(st.data)
		if st.wire > 0 {
			n = st.wire
		}
		s.Segment(int64(i), st.seq, st.flags, []byte(st.data), n)
	}
	s.Close()
	return s.Stats()
}

func TestPolicyCases(t *testing.T) {
	const isn = 1000
	cases := []struct {
		name  string
		pol   Policy
		steps []step
		want  string
		gaps  []uint64
		check func(Stats) error
	}{
		{name: "in order", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 5, "BBBB", 0}}, want: "AAAABBBB"},
		{name: "reordered", steps: []step{{syn, isn, "", 0}, {psh, isn + 5, "BBBB", 0}, {psh, isn + 1, "AAAA", 0}}, want: "AAAABBBB"},
		{name: "duplicate", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 5, "BBBB", 0}},
			want: "AAAABBBB", check: counts(0, 4, 0)},
		{name: "conflicting retransmission: first copy wins", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 1, "AXXA", 0}},
			want: "AAAA", check: counts(0, 4, 2)},
		{name: "overlapping retransmission delivers only new bytes", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 3, "AABB", 0}},
			want: "AAAABB", check: counts(0, 2, 0)},
		{name: "buffered conflict: first", steps: []step{{syn, isn, "", 0}, {psh, isn + 5, "CCCC", 0}, {psh, isn + 5, "DDDD", 0}, {psh, isn + 1, "AAAA", 0}},
			want: "AAAACCCC", check: counts(0, 4, 4)},
		{name: "buffered conflict: last", pol: Policy{Overlap: OverlapLast}, steps: []step{{syn, isn, "", 0}, {psh, isn + 5, "CCCC", 0}, {psh, isn + 5, "DDDD", 0}, {psh, isn + 1, "AAAA", 0}},
			want: "AAAADDDD", check: counts(0, 4, 4)},
		{name: "in-order data does not replace earlier buffered bytes", steps: []step{{syn, isn, "", 0}, {psh, isn + 3, "XX", 0}, {psh, isn + 1, "AAAA", 0}},
			want: "AAXX", check: counts(0, 2, 2)},
		{name: "gap skipped", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}},
			want: "AAAACCCC", gaps: []uint64{4}, check: counts(4, 0, 0)},
		{name: "gap zero-filled", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}},
			want: "AAAA\x00\x00\x00\x00CCCC", check: counts(4, 0, 0)},
		{name: "gap stops", pol: Policy{Gaps: GapStop}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}},
			want: "AAAA", check: counts(4, 0, 0)},
		{name: "leading gap", steps: []step{{syn, isn, "", 0}, {psh, isn + 5, "BBBB", 0}}, want: "BBBB", gaps: []uint64{4}},
		{name: "sequence wrap", steps: []step{{syn, 0xfffffffa, "", 0}, {psh, 0xfffffffb, "AAAA", 0}, {psh, 0xffffffff, "BBBB", 0}, {psh, 3, "CCCC", 0}},
			want: "AAAABBBBCCCC"},
		{name: "sequence wrap, reordered", steps: []step{{syn, 0xfffffffa, "", 0}, {psh, 3, "CCCC", 0}, {psh, 0xffffffff, "BBBB", 0}, {psh, 0xfffffffb, "AAAA", 0}},
			want: "AAAABBBBCCCC"},
		{name: "mid-stream start keeps the first segment", steps: []step{{psh, 5000, "AAAA", 0}, {psh, 5004, "BBBB", 0}}, want: "AAAABBBB"},
		{name: "SYN with data", steps: []step{{syn, isn, "HELLO", 0}, {psh, isn + 6, "!", 0}}, want: "HELLO!"},
		{name: "retransmitted SYN", steps: []step{{syn, isn, "", 0}, {syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}}, want: "AAAA"},
		{name: "stray RST before the SYN", steps: []step{{rst | ack, 0, "", 0}, {syn | ack, isn, "", 0}, {psh, isn + 1, "AAAA", 0}}, want: "AAAA"},
		{name: "RST flushes buffered data", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}, {rst, isn + 13, "", 0}},
			want: "AAAACCCC", gaps: []uint64{4}},
		{name: "keep-alive probes are not data", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {ack, isn + 4, "Z", 0}, {psh, isn + 5, "BBBB", 0}},
			want: "AAAABBBB", check: counts(0, 0, 0)},
		{name: "snaplen cut: missing, not data", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 8}, {psh, isn + 9, "CCCC", 0}},
			want: "AAAACCCC", gaps: []uint64{4}, check: counts(4, 0, 0)},
		{name: "nothing after FIN", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {fin, isn + 5, "", 0}, {psh, isn + 5, "ZZZZ", 0}},
			want: "AAAA"},
		{name: "FIN before the last data", steps: []step{{syn, isn, "", 0}, {fin, isn + 5, "", 0}, {psh, isn + 1, "AAAA", 0}},
			want: "AAAA"},
		{name: "hole before the FIN: missing", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {fin, isn + 9, "", 0}},
			want: "AAAA", gaps: []uint64{4}, check: counts(4, 0, 0)},
		{name: "hole before the FIN: zero-filled", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {fin, isn + 9, "", 0}},
			want: "AAAA\x00\x00\x00\x00", check: counts(4, 0, 0)},
		{name: "every data segment lost before the FIN", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {fin, isn + 7, "", 0}},
			want: "\x00\x00\x00\x00\x00\x00", check: counts(6, 0, 0)},
		// Fuzzing found this: zeros written for a hole went into the window
		// of delivered bytes, so the hole's late copy "conflicted" with them.
		{name: "late copy of a zero-filled hole is no conflict", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}, {rst, isn + 13, "", 0}, {psh, isn + 5, "BBBB", 0}},
			want: "AAAA\x00\x00\x00\x00CCCC", check: counts(4, 4, 0)},
		{name: "late copy of a skipped hole is no conflict", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 9, "CCCC", 0}, {rst, isn + 13, "", 0}, {psh, isn + 5, "BBBB", 0}},
			want: "AAAACCCC", check: counts(4, 4, 0)},
		// Fuzzing found these hanging: the zero fill stopped at the FIN,
		// the range past it stayed buffered, and giving up holes looped.
		{name: "zero fill up to a FIN with data past it, then RST", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 20, "ZZZZ", 0}, {fin, isn + 9, "", 0}, {rst, isn + 9, "", 0}},
			want: "AAAA\x00\x00\x00\x00", check: counts(4, 0, 0)},
		{name: "zero fill up to a FIN with data past it, at the end", pol: Policy{Gaps: GapZero}, steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {psh, isn + 20, "ZZZZ", 0}, {fin, isn + 9, "", 0}},
			want: "AAAA\x00\x00\x00\x00", check: counts(4, 0, 0)},
		{name: "hole before the FIN filled late", steps: []step{{syn, isn, "", 0}, {psh, isn + 1, "AAAA", 0}, {fin, isn + 9, "", 0}, {psh, isn + 5, "BBBB", 0}},
			want: "AAAABBBB", check: counts(0, 0, 0)},
	}
	for _, c := range cases {
		r, st := run(c.pol, c.steps)
		if r.b.String() != c.want {
			t.Errorf("%s: got %q, want %q", c.name, r.b.String(), c.want)
		}
		if c.pol.Gaps == GapZero {
			// A sink that takes zeros by count must see the same bytes.
			z := &zeroRec{}
			if zst := runInto(c.pol, z, c.steps); z.b.String() != c.want || zst != st {
				t.Errorf("%s: through Zeros got %q %+v, want %q %+v", c.name, z.b.String(), zst, c.want, st)
			}
		}
		if c.gaps != nil && fmt.Sprint(r.gaps) != fmt.Sprint(c.gaps) {
			t.Errorf("%s: gaps %v, want %v", c.name, r.gaps, c.gaps)
		}
		if c.check != nil {
			if err := c.check(st); err != nil {
				t.Errorf("%s: %v (%+v)", c.name, err, st)
			}
		}
	}
}

func counts(missing, retrans, overlap uint64) func(Stats) error {
	return func(s Stats) error {
		if s.MissingBytes != missing || s.RetransBytes != retrans || s.ConflictBytes != overlap {
			return fmt.Errorf("missing/retrans/overlap %d/%d/%d, want %d/%d/%d", s.MissingBytes, s.RetransBytes, s.ConflictBytes, missing, retrans, overlap)
		}
		return nil
	}
}

// A hole that never fills cannot make a stream hold more than its cap.
func TestBufferCap(t *testing.T) {
	r := &rec{}
	s := NewStream(Policy{MaxBuffer: 64 << 10}, r)
	s.Segment(0, 0, syn, nil, 0)
	chunk := bytes.Repeat([]byte("x"), 1000)
	for i := 0; i < 1000; i++ { // 1 MB after a 1000-byte hole
		s.Segment(int64(i), uint32(1001+1000*i), psh, chunk, len(chunk))
		if s.buffered > 64<<10 {
			t.Fatalf("buffered %d bytes, cap 64 KiB", s.buffered)
		}
	}
	s.Close()
	st := s.Stats()
	if st.BufferHits == 0 || st.MissingBytes != 1000 || r.b.Len() != 1000*1000 {
		t.Errorf("stats %+v, delivered %d", st, r.b.Len())
	}
}

// Many streams share a budget: the total buffered never exceeds it.
func TestSharedBudget(t *testing.T) {
	b := &Budget{Max: 256 << 10}
	var streams []*Stream
	chunk := bytes.Repeat([]byte("y"), 1400)
	for i := 0; i < 100; i++ {
		s := NewStream(Policy{Budget: b}, &rec{})
		s.Segment(0, 0, syn, nil, 0)
		streams = append(streams, s)
	}
	for j := 0; j < 50; j++ {
		for _, s := range streams {
			s.Segment(1, uint32(2000+1400*j), psh, chunk, len(chunk)) // all beyond a hole
			if b.used > b.Max+len(chunk) {
				t.Fatalf("budget used %d > %d", b.used, b.Max)
			}
		}
	}
	if b.Hits == 0 {
		t.Error("the budget was never hit")
	}
	for _, s := range streams {
		s.Close()
	}
	if b.used != 0 {
		t.Errorf("%d bytes still counted after Close", b.used)
	}
}

// Adversarial segment streams: memory stays within MaxBuffer counting each
// range's overhead, the number of buffered ranges stays bounded, and every
// byte is accounted as delivered, missing or retransmitted.
func TestTinySegmentCaps(t *testing.T) {
	const n = 200_000
	for _, tc := range []struct {
		name string
		seg  func(i int) (seq uint32, data []byte)
	}{
		// 1-byte segments in descending order: each lands in front of all
		// buffered ones.
		{"descending-1-byte", func(i int) (uint32, []byte) { return uint32(1 + n - i), []byte{byte(i)} }},
		// 2-byte segments that each overlap the previous by one byte,
		// in descending order.
		{"overlapping-2-byte", func(i int) (uint32, []byte) { return uint32(1 + n - i), []byte{byte(i), byte(i + 1)} }},
		// Descending within windows of 5000 bytes, windows ascending: the
		// buffer fills, gives up a hole and fills again, many times.
		{"descending-windows", func(i int) (uint32, []byte) { return uint32(1 + (i/5000+1)*5000 - i%5000), []byte{byte(i)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rec{}
			pol := Policy{MaxBuffer: 1 << 20}
			s := NewStream(pol, r)
			s.Segment(0, 0, syn, nil, 0)
			maxSegs, maxBuf := 0, 0
			var sent uint64
			for i := 0; i < n; i++ {
				seq, data := tc.seg(i)
				s.Segment(int64(i), seq, psh, data, len(data))
				sent += uint64(len(data))
				maxSegs, maxBuf = max(maxSegs, len(s.ooo)), max(maxBuf, s.buffered)
			}
			s.Close()
			if maxBuf > pol.MaxBuffer {
				t.Errorf("buffered %d bytes with overhead, cap %d", maxBuf, pol.MaxBuffer)
			}
			if maxSegs > s.maxSegs() {
				t.Errorf("%d ranges buffered, cap %d", maxSegs, s.maxSegs())
			}
			st := s.Stats()
			if st.BufferHits == 0 {
				t.Error("the caps were never hit")
			}
			if got := uint64(r.b.Len()) + st.RetransBytes; got != sent {
				t.Errorf("delivered %d + retransmitted %d = %d, sent %d (stats %+v)", r.b.Len(), st.RetransBytes, got, sent, st)
			}
		})
	}
}

// Retransmissions are compared with the last recentBytes delivered, kept
// in a ring that grows with the stream: whatever the segment sizes, a
// retransmitted range inside the window counts exactly its changed bytes.
func TestConflictWindow(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	const isn = 77
	var sent []byte
	s := NewStream(Policy{}, &rec{})
	s.Segment(0, isn, syn, nil, 0)
	want := uint64(0)
	for i := 0; i < 2000; i++ {
		n := 1 + r.Intn(3000)
		if r.Intn(4) == 0 {
			n = 1 + r.Intn(20) // small segments too, for the ring's growth
		}
		data := make([]byte, n)
		r.Read(data)
		s.Segment(0, isn+1+uint32(len(sent)), psh, data, n)
		sent = append(sent, data...)
		// A retransmission of a range inside the window, some bytes changed.
		window := min(len(sent), recentBytes)
		lo := len(sent) - window + r.Intn(window)
		hi := lo + 1 + r.Intn(len(sent)-lo)
		if hi-lo == 1 && hi == len(sent) {
			continue // the shape of a keep-alive probe, which is not data
		}
		re := bytes.Clone(sent[lo:hi])
		for k := range re {
			if r.Intn(10) == 0 {
				re[k] ^= 0xff
				want++
			}
		}
		s.Segment(0, isn+1+uint32(lo), psh, re, len(re))
	}
	if got := s.Stats().ConflictBytes; got != want {
		t.Errorf("%d conflicting bytes counted, want %d", got, want)
	}
}
