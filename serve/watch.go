package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pcapflow/pcapflow"
)

// watcher indexes the captures that appear in a directory. A file is
// taken once it is complete: its size and modification time unchanged
// for the settle time (a capture renamed into place is complete when
// it appears, and waits one settle time like any other; tcpdump -C and
// -G write each file in place and move on to the next). Hidden files
// (.name) are still being written by convention and are passed over.
// Files are added in time order through the Indexer, so connections
// continue across them; each commit swaps in the new archive.
type watcher struct {
	s      *Server
	dir    string
	settle time.Duration
	seen   map[string]fileState
	done   map[string]bool // indexed, or refused for good
	mu     sync.Mutex
	st     watchState
}

type fileState struct {
	size  int64
	mtime time.Time
	since time.Time // when it was first seen with this size and time
}

type watchState struct {
	indexed, pending int
	lastErr          string
}

func newWatcher(s *Server, dir string, settle time.Duration) *watcher {
	return &watcher{s: s, dir: dir, settle: settle, seen: map[string]fileState{}, done: map[string]bool{}}
}

func (w *watcher) state() watchState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	w.st.lastErr = err.Error()
	w.mu.Unlock()
	w.s.logf(err)
}

// run scans the directory every quarter of the settle time until ctx ends.
func (w *watcher) run(ctx context.Context) {
	// Captures the index already holds are not added again (Index skips
	// them), so restarting a server picks up where it was.
	tick := time.NewTicker(max(w.settle/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		w.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *watcher) scan(ctx context.Context) {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		w.fail(fmt.Errorf("watch %s: %w", w.dir, err))
		return
	}
	now := time.Now()
	var ready []string
	pending := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || name[0] == '.' || w.done[name] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		st := fileState{size: info.Size(), mtime: info.ModTime(), since: now}
		if old, ok := w.seen[name]; ok && old.size == st.size && old.mtime.Equal(st.mtime) {
			st.since = old.since
		}
		w.seen[name] = st
		if now.Sub(st.since) < w.settle || st.size == 0 {
			pending++
			continue
		}
		ready = append(ready, filepath.Join(w.dir, name))
	}
	w.mu.Lock()
	w.st.pending = pending + len(ready)
	w.mu.Unlock()
	if len(ready) == 0 {
		return
	}
	caps, skipped, err := pcapflow.Discover(ready)
	if err != nil {
		w.fail(err)
		return
	}
	for _, p := range skipped {
		w.done[filepath.Base(p)] = true
	}
	for _, p := range ready { // files Discover found not to be captures
		if !slices.Contains(caps, p) {
			w.done[filepath.Base(p)] = true
		}
	}
	if len(caps) == 0 {
		return
	}
	added := 0
	add := func(paths []string) error {
		res, err := w.s.indexr.Add(ctx, paths)
		if res != nil {
			added += len(res.Added)
			for _, e := range res.Errors {
				w.fail(e)
			}
		}
		return err
	}
	err = add(caps)
	if errors.Is(err, pcapflow.ErrOlder) && len(caps) > 1 {
		// One of them is older than the archive: the others go in on
		// their own, in name order (tcpdump's x.pcap2 before x.pcap10).
		slices.SortFunc(caps, naturalCompare)
		for _, p := range caps {
			if err := add([]string{p}); err != nil {
				w.fail(err)
			}
		}
		err = nil
	}
	for _, p := range caps {
		w.done[filepath.Base(p)] = true
	}
	if err != nil {
		// A capture older than the archive, a full disk: said, and not
		// retried (its name stays done) so that the rest goes on.
		w.fail(err)
		if ctx.Err() != nil {
			return
		}
	}
	a, aerr := w.s.indexr.Archive()
	if aerr != nil {
		w.fail(aerr)
		return
	}
	w.s.swap(a)
	w.mu.Lock()
	w.st.indexed += added
	w.st.pending = pending
	w.mu.Unlock()
}

// naturalCompare orders names with their digit runs compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
