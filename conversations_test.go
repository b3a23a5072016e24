package pcapflow

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// countingStore counts the flow records an index hands out.
type countingStore struct {
	*index.Store
	read int
}

func (c *countingStore) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	return c.Store.Flows(ctx, ids, func(f *flow.Flow) error { c.read++; return fn(f) })
}

// Conversations of a selective filter read the matching flows and their
// peers, not the whole index: when both directions matched, an empty
// list of peers to fetch was passed on as "every flow" (1.2 s and
// 550 MB on a 1.7 M-flow index, for one conversation).
func TestConversationsReadOnlyWhatTheyReturn(t *testing.T) {
	p := filepath.Join(t.TempDir(), "basic.pcap")
	if err := os.WriteFile(p, capgen.Files()[0].Make(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := Index(ctx, DefaultIndex(p), []string{p}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := index.Open(DefaultIndex(p))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var peer uint64
	st.Flows(ctx, []uint64{1}, func(f *flow.Flow) error { peer = f.Peer; return nil })
	if peer == 0 || st.NumFlows() < 6 {
		t.Fatalf("the basic capture's flow 1 has no peer (%d flows)", st.NumFlows())
	}
	for _, tc := range []struct {
		filter string
		max    int
	}{
		{fmt.Sprintf("flow 1 or flow %d", peer), 2}, // both directions match
		{"flow 1", 2}, // the peer is fetched
	} {
		cs := &countingStore{Store: st}
		a := newArchive(cs, st, "")
		n := 0
		for c, err := range a.Conversations(ctx, Query{Filter: tc.filter}) {
			if err != nil {
				t.Fatal(err)
			}
			if c.B == nil {
				t.Errorf("%s: conversation without its peer", tc.filter)
			}
			n++
		}
		if n != 1 {
			t.Errorf("%s: %d conversations, want 1", tc.filter, n)
		}
		if cs.read > tc.max {
			t.Errorf("%s: read %d flow records of %d, want at most %d", tc.filter, cs.read, st.NumFlows(), tc.max)
		}
	}
}
