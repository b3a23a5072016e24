package serve

import (
	"context"
	"sync"
	"time"

	"github.com/pcapflow/pcapflow"
)

// countCache answers repeated counts of one archive from memory, and
// lets concurrent requests for the same count share one computation: a
// count reads every matching flow's record (0.4 s for half a million
// flows), pages and dashboards ask the same few again and again, and an
// archive does not change under a count (a commit of a watched capture
// opens a new Archive, and the cache starts over).
type countCache struct {
	mu      sync.Mutex
	archive *pcapflow.Archive
	entries map[string]*countEntry
}

type countEntry struct {
	done chan struct{} // closed when c and err are set
	c    pcapflow.Counts
	err  error
}

// maxCounts bounds the cache; beyond it, it starts over.
const maxCounts = 4096

// get returns the counts of filter e on a, computing them once.
// The computation is bounded by limit, not by the first asker's
// context: others may be waiting for it.
func (cc *countCache) get(ctx context.Context, a *pcapflow.Archive, e pcapflow.Expr, limit time.Duration) (pcapflow.Counts, error) {
	key := ""
	if e != nil {
		key = e.String()
	}
	cc.mu.Lock()
	if cc.archive != a || len(cc.entries) >= maxCounts {
		cc.archive, cc.entries = a, map[string]*countEntry{}
	}
	en, ok := cc.entries[key]
	if !ok {
		en = &countEntry{done: make(chan struct{})}
		cc.entries[key] = en
	}
	cc.mu.Unlock()
	if !ok {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		en.c, en.err = a.Count(cctx, pcapflow.Query{Expr: e})
		cancel()
		if en.err != nil {
			cc.mu.Lock()
			if cc.entries[key] == en {
				delete(cc.entries, key) // an error is not remembered
			}
			cc.mu.Unlock()
		}
		close(en.done)
	}
	select {
	case <-en.done:
		return en.c, en.err
	case <-ctx.Done():
		return pcapflow.Counts{}, ctx.Err()
	}
}
