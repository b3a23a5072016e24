package index

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrStore means the store could not write: a full disk, an I/O error, a
// read-only file system. The run that met it ended without committing,
// so the index still answers what it answered before.
var ErrStore = errors.New("the index store failed to write")

// guard watches a writable store for the failures Pebble meets in its
// own goroutines. Pebble retries a failed flush forever and reports the
// error only to its event listener, so a call that waits for the flush
// (Flush, a Commit stalled behind a full memtable, Close) would wait
// forever on a full disk. Every such call goes through the guard, which
// returns the first background error as soon as it is reported.
//
// A fatal error (Pebble's Logger.Fatalf: its manifest could not be
// written) leaves Pebble's state undefined: the goroutine that met it is
// parked for good and the store is never touched again, not even closed;
// its files are released when the process exits. What is on disk is the
// last commit, since a manifest record that did not get written does not
// exist for the next open.
type guard struct {
	dir    string
	mu     sync.Mutex
	err    error
	fatal  bool
	failed chan struct{}
}

func newGuard(dir string) *guard { return &guard{dir: dir, failed: make(chan struct{})} }

func (g *guard) fail(err error, fatal bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fatal = g.fatal || fatal
	if g.err == nil {
		g.err = fmt.Errorf("%s: %w: %w", g.dir, ErrStore, err)
		close(g.failed)
	}
}

// error returns the first failure, or nil.
func (g *guard) error() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// listen routes Pebble's background errors and fatal errors to the guard.
func (g *guard) listen(o *pebble.Options) {
	o.EventListener = &pebble.EventListener{
		BackgroundError: func(err error) { g.fail(err, false) },
	}
	o.Logger = fatalLogger{g}
}

// fatalLogger is the Logger of a writable store.
type fatalLogger struct{ g *guard }

func (fatalLogger) Infof(string, ...interface{})  {}
func (fatalLogger) Errorf(string, ...interface{}) {}
func (l fatalLogger) Fatalf(format string, args ...interface{}) {
	l.g.fail(fmt.Errorf(format, args...), true)
	select {} // see guard: this goroutine must not go on
}

// wait runs fn, which may block inside Pebble, and returns its error, or
// the store's failure as soon as there is one (fn is then abandoned).
func (g *guard) wait(fn func() error) error {
	if err := g.error(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		// Pebble panics where it cannot go on (a directory that cannot be
		// synced): that is the store's failure, not the process's.
		defer func() {
			if r := recover(); r != nil {
				err, ok := r.(error)
				if !ok {
					err = fmt.Errorf("%v", r)
				}
				g.fail(err, true)
			}
		}()
		done <- fn()
	}()
	select {
	case err := <-done:
		if gerr := g.error(); gerr != nil {
			return gerr
		}
		return err
	case <-g.failed:
		return g.error()
	}
}

// flush makes what was written durable.
func (g *guard) flush(db *pebble.DB) error {
	return g.wait(func() error {
		ch, err := db.AsyncFlush()
		if err != nil {
			return fmt.Errorf("%s: %w", g.dir, err)
		}
		<-ch
		return nil
	})
}

// Pebble's own write stalls are switched off for writable stores
// (pebbleOptions): a commit that stalls inside Pebble holds its commit
// lock, and if the flush it waits for keeps failing, neither the commit
// nor Close ever returns. The writer applies the back-pressure instead,
// after each batch, where it can give up.
const (
	maxMemtables = 4  // queued memtables before the writer waits for a flush
	maxL0        = 64 // level-0 read amplification before it waits for compactions
)

// backpressure waits, after a commit, until Pebble has caught up with
// the writes: memtables flushed, level 0 compacted.
func (g *guard) backpressure(db *pebble.DB) error {
	for {
		var mem int64
		var l0 int32
		if err := g.wait(func() error {
			m := db.Metrics()
			mem, l0 = m.MemTable.Count, m.Levels[0].Sublevels
			return nil
		}); err != nil {
			return err
		}
		switch {
		case mem > maxMemtables:
			if err := g.flush(db); err != nil {
				return err
			}
		case l0 > maxL0:
			select {
			case <-g.failed:
				return g.error()
			case <-time.After(10 * time.Millisecond):
			}
		default:
			return nil
		}
	}
}

// closeTimeout bounds how long closing a store that failed may take: a
// flush being retried in the background stops at the close, but a
// goroutine stalled behind it might not.
const closeTimeout = 5 * time.Second

// close closes the store, unless a fatal error made that unsafe; if one
// happens while closing (Close waits for a flush that met it), it gives
// up waiting.
func (g *guard) close(db *pebble.DB) error {
	if g.isFatal() {
		return g.error()
	}
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	failed := g.failed
	for {
		select {
		case err := <-done:
			if gerr := g.error(); gerr != nil {
				return gerr
			}
			return err
		case <-failed:
			if g.isFatal() {
				return g.error()
			}
			failed = nil // a background error: Close still ends
		case <-t.C:
			if err := g.error(); err != nil {
				return err
			}
			return fmt.Errorf("%s: closing the store did not end within %v", g.dir, closeTimeout)
		}
	}
}

func (g *guard) isFatal() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fatal
}
