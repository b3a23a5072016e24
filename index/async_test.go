package index

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
)

// recordingSink is an ingestSink that keeps what it is handed.
type recordingSink struct {
	ends   []string // "flow ID: chunks C, refs [...]"
	chunks []string // "flow ID chunk N: K refs"
}

func (r *recordingSink) started(*flow.Flow, PacketRef) error { return nil }
func (r *recordingSink) chunk(id uint64, n uint32, b []byte) error {
	refs, err := decodeChunk(b, PacketRef{}, nil)
	if err != nil {
		return err
	}
	r.chunks = append(r.chunks, fmt.Sprintf("flow %d chunk %d: %d refs from %v", id, n, len(refs), refs[0]))
	return nil
}
func (r *recordingSink) ended(flows []endedFlow) error {
	for _, f := range flows {
		r.ends = append(r.ends, fmt.Sprintf("flow %d: chunks %d, refs %v", f.f.ID, f.chunks, f.post.appendRefs(nil)))
	}
	return nil
}
func (r *recordingSink) inCapture(uint64, int)                {}
func (r *recordingSink) checkpoints(int, int, []int64) error  { return nil }
func (r *recordingSink) capture(int, *CaptureInfo) error      { return nil }
func (r *recordingSink) resumePoint(int, int64, []byte) error { return nil }

// TestAsyncPostings: with an asyncSink, the postings are kept on the
// sink's goroutine from the slots and references the table hands it, in
// the order of the table's calls: a slot's flow that ends takes exactly
// the packets posted before its end, and the flow that reuses the slot
// after it starts empty; a chunk that fills is written as it fills, in
// the batch it filled in.
func TestAsyncPostings(t *testing.T) {
	dst := &recordingSink{}
	a := newAsyncSink(dst)
	ps := &postings{}
	a.ps = ps
	ref := func(i int64) PacketRef { return PacketRef{Capture: 0, Index: i} }
	f1, f2, f3 := &flow.Flow{ID: 1}, &flow.Flow{ID: 2}, &flow.Flow{ID: 3}

	a.post(0, 1, ref(10))
	a.post(1, 2, ref(11))
	a.post(0, 1, ref(12))
	a.endedSlots([]flow.Ended{{Slot: 0, Flow: f1}})
	a.post(0, 3, ref(13)) // flow 3 takes slot 0 in the same batch
	a.flush()
	for i := int64(0); i < chunkMax+1; i++ {
		a.post(1, 2, ref(20+i))
	}
	a.flush()
	a.endedSlots([]flow.Ended{{Slot: 1, Flow: f2}})
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	wantEnded := []string{
		"flow 1: chunks 0, refs [{0 10} {0 12}]",
		// 11 and 20.. 20+chunkMax-2 filled chunk 0.
		fmt.Sprintf("flow 2: chunks 1, refs [{0 %d} {0 %d}]", 20+chunkMax-1, 20+chunkMax),
	}
	if !slices.Equal(dst.ends, wantEnded) {
		t.Errorf("ended:\n got %q\nwant %q", dst.ends, wantEnded)
	}
	wantChunks := []string{fmt.Sprintf("flow 2 chunk 0: %d refs from {0 11}", chunkMax)}
	if !slices.Equal(dst.chunks, wantChunks) {
		t.Errorf("chunks:\n got %q\nwant %q", dst.chunks, wantChunks)
	}
	// What is live stays with the postings, for the commit.
	if got := ps.ended(0, f3).post.appendRefs(nil); !slices.Equal(got, []PacketRef{ref(13)}) {
		t.Errorf("flow 3, live in slot 0: refs %v, want [{0 13}]", got)
	}
	if got := ps.slots.at(1); got.n != 0 || got.chunks != 0 {
		t.Errorf("slot 1 after its flow ended: %d refs, %d chunks; want none", got.n, got.chunks)
	}
}
