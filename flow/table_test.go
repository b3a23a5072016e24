package flow_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// shifted returns d repeated n times, copy i moved by i*shift in time,
// as rotated captures of a busy link hours apart are. Its packets are
// spread 1000 times further apart than Mix makes them (10 ms), so that
// a copy lasts minutes and closed connections time out within it.
func shifted(d decoded, n int, shift time.Duration) decoded {
	var out decoded
	t0 := d.recs[0].Timestamp
	for i := 0; i < n; i++ {
		for j := range d.recs {
			r := d.recs[j]
			r.Timestamp = t0 + (r.Timestamp-t0)*1000 + int64(i)*int64(shift)
			out.recs = append(out.recs, r)
			out.pkts = append(out.pkts, d.pkts[j])
		}
	}
	return out
}

// ended collects the flows a table ends, as JSON lines keyed by ID.
type ended struct {
	lines map[uint64]string
	dups  int
}

func (e *ended) onEnd(t *testing.T) func([]flow.Ended) {
	return func(fs []flow.Ended) {
		for _, x := range fs {
			var b bytes.Buffer
			w, err := flow.NewWriter(&b, flow.FormatJSON, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(x.Flow); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if _, ok := e.lines[x.Flow.ID]; ok {
				e.dups++
			}
			e.lines[x.Flow.ID] = b.String()
		}
	}
}

func (e *ended) sorted() []string {
	ids := make([]uint64, 0, len(e.lines))
	for id := range e.lines {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = e.lines[id]
	}
	return out
}

// The table holds the connections that are alive, not every flow it has
// seen: across copies of a capture an hour apart, the most flows held at
// once stays what one copy needs, while every flow still ends exactly
// once. With no idle timeout, it holds them all, as documented.
func TestTableHoldsOnlyLiveFlows(t *testing.T) {
	one := decodeMix(capgen.MixOptions{Seed: 3, Bytes: 8 << 20, Active: 300, MeanPackets: 6})
	const copies = 4
	d := shifted(one, copies, time.Hour)
	for _, tc := range []struct {
		name string
		idle time.Duration
	}{{"default timeouts", flow.DefaultIdleTimeout}, {"never", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := &ended{lines: map[uint64]string{}}
			tb := flow.NewTable(flow.Options{IdleTimeout: tc.idle, OnEnd: e.onEnd(t)})
			peak := make([]int, copies)
			for i := range d.recs {
				tb.Add(&d.recs[i], &d.pkts[i])
				c := i / len(one.recs)
				peak[c] = max(peak[c], tb.Live())
			}
			tb.Finish()
			total := int(tb.NextID() - 1)
			t.Logf("%d flows, most held at once per copy: %v", total, peak)
			if len(e.lines) != total || e.dups != 0 {
				t.Fatalf("%d flows ended (%d twice), table made %d", len(e.lines), e.dups, total)
			}
			if tb.Live() != 0 {
				t.Fatalf("%d flows live after Finish", tb.Live())
			}
			if tc.idle == 0 {
				if peak[copies-1] != total {
					t.Fatalf("no timeout: %d flows held at the end, want all %d", peak[copies-1], total)
				}
				return
			}
			if peak[0] >= total/copies {
				t.Fatalf("one copy held all its %d flows at once (peak %d): nothing ended early", total/copies, peak[0])
			}
			for c := 1; c < copies; c++ {
				if peak[c] > peak[0]+peak[0]/4 {
					t.Errorf("copy %d held %d flows at once, the first %d: the table grows with history", c, peak[c], peak[0])
				}
			}
		})
	}
}

// The deadline queue follows the live connections too: those of ended
// connections are dropped (compactDeadlines), and what ends, and when,
// is the same as with every deadline kept. The copies are a minute
// apart, well within the idle timeout, so that without the compaction
// the connections of every copy that closed stay queued.
func TestDeadlinesFollowLiveConnections(t *testing.T) {
	one := decodeMix(capgen.MixOptions{Seed: 5, Bytes: 8 << 20, Active: 300, MeanPackets: 6})
	const copies = 8
	d := shifted(one, copies, time.Minute)
	run := func(compact bool) (lines []string, peakQueue, peakLive int) {
		e := &ended{lines: map[uint64]string{}}
		var tb *flow.Table
		record := e.onEnd(t)
		tb = flow.NewTable(flow.Options{IdleTimeout: flow.DefaultIdleTimeout, OnEnd: func(fs []flow.Ended) {
			record(fs)
			for _, x := range fs { // when it ended, too
				e.lines[x.Flow.ID] += fmt.Sprint(" ended at ", tb.Clock())
			}
		}})
		if !compact {
			tb.NeverCompactDeadlines()
		}
		for i := range d.recs {
			tb.Add(&d.recs[i], &d.pkts[i])
			peakQueue, peakLive = max(peakQueue, tb.QueuedDeadlines()), max(peakLive, tb.Live())
		}
		tb.Finish()
		return e.sorted(), peakQueue, peakLive
	}
	got, queue, live := run(true)
	want, queueAll, _ := run(false)
	t.Logf("%d flows; most live at once %d; deadlines queued at most %d, %d without compaction", len(got), live, queue, queueAll)
	if !slices.Equal(got, want) {
		t.Fatal("the flows differ with the deadline queue compacted")
	}
	if queue > 2*live+4096+1 {
		t.Errorf("%d deadlines queued for at most %d live flows", queue, live)
	}
	if queueAll <= queue {
		t.Errorf("without compaction %d deadlines queued, with %d: the test does not exercise it", queueAll, queue)
	}
}

// A table stopped anywhere, its state saved with the live flows' records
// and restored, goes on exactly as one that never stopped: the same flow
// IDs, counters, states and histories. This is what an index that grows
// one capture per run rests on.
func TestTableStateRoundTrip(t *testing.T) {
	d := decodeMix(capgen.MixOptions{Seed: 11, Bytes: 4 << 20, Active: 200, MeanPackets: 5})
	want := &ended{lines: map[uint64]string{}}
	opts := flow.Options{IdleTimeout: 2 * time.Second}
	whole := opts
	whole.OnEnd = want.onEnd(t)
	tb := flow.NewTable(whole)
	for i := range d.recs {
		tb.Add(&d.recs[i], &d.pkts[i])
	}
	tb.Finish()

	for _, stop := range []int{1, 17, len(d.recs) / 3, len(d.recs) / 2, len(d.recs) - 1} {
		t.Run(fmt.Sprint(stop), func(t *testing.T) {
			got := &ended{lines: map[uint64]string{}}
			o := opts
			o.OnEnd = got.onEnd(t)
			a := flow.NewTable(o)
			for i := range d.recs[:stop] {
				a.Add(&d.recs[i], &d.pkts[i])
			}
			a.EndCapture(0)
			slots := a.LiveFlows()
			records := map[uint64]*flow.Flow{}
			for _, s := range slots {
				f := new(flow.Flow)
				a.Snapshot(s, f)
				records[f.ID] = f
			}
			state, err := a.MarshalState(slots)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := flow.StateIDs(state)
			if err != nil || len(ids) != len(slots) {
				t.Fatalf("StateIDs: %d ids, %v; want %d", len(ids), err, len(slots))
			}
			b, err := flow.RestoreTable(o, state, func(id uint64) (*flow.Flow, error) {
				f, ok := records[id]
				if !ok {
					return nil, fmt.Errorf("no record for flow %d", id)
				}
				return f, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if b.NextID() != a.NextID() || b.Live() != a.Live() {
				t.Fatalf("restored: next ID %d, %d live; saved %d, %d", b.NextID(), b.Live(), a.NextID(), a.Live())
			}
			for i := stop; i < len(d.recs); i++ {
				b.Add(&d.recs[i], &d.pkts[i])
			}
			b.Finish()
			if g, w := got.sorted(), want.sorted(); !slices.Equal(g, w) {
				for i := range min(len(g), len(w)) {
					if g[i] != w[i] {
						t.Fatalf("flow %d of %d/%d differs:\n got %s want %s", i, len(g), len(w), g[i], w[i])
					}
				}
				t.Fatalf("%d flows, want %d", len(g), len(w))
			}
		})
	}
}

// A damaged or foreign state is refused with ErrState, never restored
// into a table that would answer wrongly.
func TestRestoreRefusesDamagedState(t *testing.T) {
	d := decodeMix(capgen.MixOptions{Seed: 5, Bytes: 1 << 20, Active: 50})
	a := flow.NewTable(flow.Options{IdleTimeout: time.Minute})
	for i := range d.recs[:len(d.recs)/2] {
		a.Add(&d.recs[i], &d.pkts[i])
	}
	a.EndCapture(0)
	slots := a.LiveFlows()
	if len(slots) == 0 {
		t.Fatal("no live flows to save")
	}
	state, err := a.MarshalState(slots)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(uint64) (*flow.Flow, error) { return new(flow.Flow), nil }
	for _, tc := range []struct {
		name  string
		state []byte
	}{
		{"empty", nil},
		{"other version", append([]byte("pcapflow-table/0"), state[len("pcapflow-table/4"):]...)},
		{"truncated", state[:len(state)/2]},
		{"one byte short", state[:len(state)-1]},
		{"trailing bytes", append(slices.Clone(state), 0, 1, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flow.RestoreTable(flow.Options{IdleTimeout: time.Minute}, tc.state, rec)
			if err == nil || !strings.Contains(err.Error(), flow.ErrState.Error()) {
				t.Fatalf("err = %v, want ErrState", err)
			}
		})
	}
}

// Prefetch only reads: a table given every group of packets' hashes
// ahead ends the same flows, and odd groups (none, more than it takes,
// hashes of nothing in the table) are fine.
func TestPrefetchChangesNothing(t *testing.T) {
	d := decodeMix(capgen.MixOptions{Seed: 9, Bytes: 4 << 20, Active: 500, MeanPackets: 5})
	hashes := make([]uint64, len(d.pkts))
	for i := range d.pkts {
		hashes[i] = flow.HashOf(&d.pkts[i])
	}
	run := func(group int) []string {
		e := &ended{lines: map[uint64]string{}}
		tb := flow.NewTable(flow.Options{IdleTimeout: flow.DefaultIdleTimeout, OnEnd: e.onEnd(t)})
		tb.Prefetch(nil)
		for i := range d.recs {
			if group > 0 && i%group == 0 {
				tb.Prefetch(hashes[i:min(i+group, len(hashes))])
				tb.Prefetch([]uint64{^uint64(0), 0})
			}
			tb.Add(&d.recs[i], &d.pkts[i])
		}
		tb.Finish()
		return e.sorted()
	}
	want := run(0)
	for _, group := range []int{1, 16, 100} {
		if got := run(group); !slices.Equal(got, want) {
			t.Errorf("prefetching groups of %d: the flows differ", group)
		}
	}
}

// AddKeyed, given each packet's key and hash, ends the same flows as Add
// (mixed TCP and UDP over IPv4 and IPv6; the index's corpus tests cover
// tunnels, fragments and VLANs through it).
func TestAddKeyedIsAdd(t *testing.T) {
	d := decodeMix(capgen.MixOptions{Seed: 11, Bytes: 4 << 20, Active: 500, MeanPackets: 5})
	run := func(keyed bool) []string {
		e := &ended{lines: map[uint64]string{}}
		tb := flow.NewTable(flow.Options{IdleTimeout: flow.DefaultIdleTimeout, OnEnd: e.onEnd(t)})
		for i := range d.recs {
			if keyed {
				k := flow.KeyOf(&d.pkts[i])
				if h := k.Hash(); h != flow.HashOf(&d.pkts[i]) {
					t.Fatalf("packet %d: Key.Hash %x, HashOf %x", i, h, flow.HashOf(&d.pkts[i]))
				}
				tb.AddKeyed(&d.recs[i], &d.pkts[i], &k, k.Hash())
			} else {
				tb.Add(&d.recs[i], &d.pkts[i])
			}
		}
		tb.Finish()
		return e.sorted()
	}
	want, got := run(false), run(true)
	if len(want) < 100 {
		t.Fatalf("only %d flows", len(want))
	}
	if !slices.Equal(got, want) {
		t.Errorf("AddKeyed ends other flows than Add")
	}
}

// TestWarmChangesNothing: expire's reading ahead for the next deadline
// (warmNext) only warms caches, so a table ends the same flows, with the
// same values, in the same order, with it and without it.
func TestWarmChangesNothing(t *testing.T) {
	d := decodeMix(capgen.MixOptions{Seed: 13, Bytes: 32 << 20, Active: 2000, MeanPackets: 3})
	// Stretched to 0.6 ms a packet: connections end as the packets come
	// (10 s after their close), not only at Finish, and a deadline is
	// within warmAhead of the clock for a few packets before it comes,
	// so that warmNext takes all its steps.
	first := d.recs[0].Timestamp
	for i := range d.recs {
		d.recs[i].Timestamp = first + (d.recs[i].Timestamp-first)*60
	}
	run := func(warm bool) (out []string, beforeFinish int) {
		tb := flow.NewTable(flow.Options{IdleTimeout: flow.DefaultIdleTimeout, OnEnd: func(fs []flow.Ended) {
			for _, e := range fs {
				out = append(out, fmt.Sprintf("%+v", *e.Flow))
			}
		}})
		if !warm {
			tb.NoWarm()
		}
		for i := range d.recs {
			tb.Add(&d.recs[i], &d.pkts[i])
		}
		beforeFinish = len(out)
		tb.Finish()
		return out, beforeFinish
	}
	want, n := run(false)
	got, _ := run(true)
	if n < 1000 {
		t.Fatalf("only %d flows ended before Finish: the test does not exercise expiry", n)
	}
	if !slices.Equal(got, want) {
		t.Errorf("with warming the table ends other flows, or in another order (%d against %d)", len(got), len(want))
	}
}

// LiveFlows sorts the live flows' IDs with a radix sort over their span:
// the same order as a comparison sort, whatever the span, with every
// slot still beside its ID.
func TestSortIDSlots(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		n    int
		span uint64
	}{{0, 1}, {1, 1}, {255, 1 << 10}, {256, 256}, {300, 1 << 9}, {5000, 1 << 20}, {5000, 1 << 40}, {5000, 1<<64 - 1}, {100000, 1 << 22}} {
		seen := map[uint64]bool{}
		base := r.Uint64N(1 << 50)
		var ids []uint64
		for len(ids) < tc.n {
			id := base + r.Uint64N(tc.span)
			if tc.span == 1<<64-1 {
				id = r.Uint64()
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		got := flow.SortIDSlots(ids)
		want := slices.Sorted(slices.Values(ids))
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%d IDs over a span of %d: sorted wrong (or slots lost)", tc.n, tc.span)
		}
	}
}

// Key.Set sets every field: over a key whose every field holds
// something, it gives what KeyOf gives from a zero key.
func TestKeySetEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 200; trial++ {
		var p pcapio.Packet
		p.IPVersion = []uint8{4, 6}[r.IntN(2)]
		p.Proto = []uint8{pcapio.ProtoTCP, pcapio.ProtoUDP, pcapio.ProtoICMP, 47}[r.IntN(4)]
		for i := range p.Src {
			p.Src[i], p.Dst[i] = byte(r.IntN(256)), byte(r.IntN(256))
		}
		p.HasPorts = r.IntN(2) == 0
		p.SrcPort, p.DstPort = uint16(r.IntN(65536)), uint16(r.IntN(65536))
		p.NumVLAN = r.IntN(len(p.VLAN) + 1)
		for i := range p.VLAN {
			p.VLAN[i] = uint16(r.IntN(4096))
		}
		var dirty flow.Key
		v := reflect.ValueOf(&dirty).Elem()
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Array:
				for j := 0; j < f.Len(); j++ {
					f.Index(j).SetUint(0x55)
				}
			default:
				f.SetUint(0x55)
			}
			if f.IsZero() {
				t.Fatalf("field %s left zero", v.Type().Field(i).Name)
			}
		}
		dirty.Set(&p)
		if want := flow.KeyOf(&p); dirty != want {
			t.Fatalf("Set over a used key: %+v, KeyOf: %+v", dirty, want)
		}
	}
}

// IsReverseOf and SetReverse agree with Reverse, ICMP's counterpart
// types included, and a key differing in any field is not a reverse.
func TestReverseInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for trial := 0; trial < 500; trial++ {
		var k flow.Key
		k.IPVersion = []uint8{4, 6}[r.IntN(2)]
		k.Proto = []uint8{pcapio.ProtoTCP, pcapio.ProtoUDP, pcapio.ProtoICMP, pcapio.ProtoICMPv6}[r.IntN(4)]
		k.Src[0], k.Dst[0] = byte(r.IntN(4)), byte(r.IntN(4))
		k.SrcPort, k.DstPort = uint16(r.IntN(20)), uint16(r.IntN(20))
		k.NumVLAN, k.VLAN[0] = uint8(r.IntN(2)), uint16(r.IntN(3))
		k.Tunnel = uint32(r.IntN(2))
		rev := k.Reverse()
		var in flow.Key
		in.SetReverse(&k)
		if in != rev {
			t.Fatalf("%+v: SetReverse %+v, Reverse %+v", k, in, rev)
		}
		if !rev.IsReverseOf(&k) {
			t.Fatalf("%+v: its Reverse %+v is not its reverse", k, rev)
		}
		other := rev
		other.TunnelID++
		if other.IsReverseOf(&k) {
			t.Fatalf("%+v: %+v, another tunnel, taken as its reverse", k, other)
		}
	}
}
