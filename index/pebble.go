package index

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// lockName is our own advisory lock in the index directory. Pebble's lock
// is exclusive even for read-only opens; ours lets many readers share an
// index while a writer excludes them all.
const lockName = "pcapflow.lock"

// ErrReadOnly means captures cannot be added to an index because its
// directory cannot be written (a read-only mount, no permission); it can
// still be queried.
var ErrReadOnly = errors.New("the index is read-only")

// ErrInUse means another process holds the index.
var ErrInUse = errors.New("index is in use by another pcapflow process")

// DefaultPath is the index directory used for a single capture.
func DefaultPath(capture string) string { return capture + ".pfidx" }

// quietLogger drops Pebble's informational messages (WAL replay and the
// like); errors still surface as returned errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

// memtableSize is the memtable for a process whose Go heap is held
// under limit (debug.SetMemoryLimit). Memtables live outside the Go heap
// and up to four of them queue (guard.go), so below 300 MB of limit they
// are halved: on the 2 GB real capture, a 260M limit (the CLI's default)
// peaks at 312 MB with 16 MB memtables and at 294 MB with 8 MB ones.
// 16 MB otherwise: smaller memtables would slow a run with room.
func memtableSize(limit int64) uint64 {
	if limit < 300<<20 {
		return 8 << 20
	}
	return 16 << 20
}

// l0Deep is the depth of level 0, in sublevels, at which a run's
// commit compacts the store (builder.compactsAtEnd).
const l0Deep = 4

// l0Compaction is Pebble's L0CompactionThreshold. Pebble compacts level
// 0 once it is half that many sublevels deep (its score counts each
// sublevel twice): during a run only, since the commit compacts at
// l0Deep, and only in runs long enough to pile up 32 sublevels.
const l0Compaction = 64

// rawFlushes lets a run write its level-0 tables uncompressed, while it
// knows its commit compacts them (a fresh store's first run: see
// builder.compactsAtEnd): they are read back once, by that compaction,
// which writes them compressed into the lower levels. Compressing them
// as well was the flushes' part of the pass's CPU, and the compaction's
// decompressing them again was part of its own: on the 2 GB real
// capture, 0.2 of 4.4 core-seconds (BENCHMARKS.md, thirteenth session).
// Once a table has been written raw, the store keeps saying so, so that
// the commit compacts even when the run failed before it and another
// run of the same writer goes on.
type rawFlushes struct {
	on    atomic.Bool // level-0 tables are written raw
	wrote atomic.Bool // one was
}

// noLockFS skips Pebble's directory lock; pcapflow.lock guards the index.
type noLockFS struct{ vfs.FS }

func (noLockFS) Lock(string) (io.Closer, error) { return io.NopCloser(nil), nil }

// pebbleOptions are the store's options; raw, when not nil, may turn the
// compression of level-0 tables off.
func pebbleOptions(readOnly bool, fs vfs.FS, raw *rawFlushes) *pebble.Options {
	if fs == nil {
		fs = vfs.Default
	}
	o := &pebble.Options{
		FS:                 noLockFS{fs},
		Logger:             quietLogger{},
		ReadOnly:           readOnly,
		FormatMajorVersion: pebble.FormatNewest,
	}
	if !readOnly {
		// A bulk load: the index can always be rebuilt from the captures,
		// so no write-ahead log; progress is made durable by explicit
		// flushes around the state marker (see Build).
		o.DisableWAL = true
		o.MemTableSize = memtableSize(debug.SetMemoryLimit(-1))
		// An index run writes tens of megabytes once; compacting its
		// level-0 tables as they come costs the run CPU and gains its
		// readers nothing: the commit compacts them, beside its own work
		// (builder.compactsAtEnd).
		o.L0CompactionThreshold = l0Compaction
		o.L0CompactionFileThreshold = 64
		// No write stalls inside Pebble: the writer applies the
		// back-pressure (guard.backpressure), where it can give up.
		o.L0StopWritesThreshold = 1 << 20
		o.MemTableStopWritesThreshold = 1 << 20
	}
	// zstd level 3, storing a block compressed if that saves at least 1%.
	// Pebble's profile keeps a block raw unless it shrinks by 12%, which
	// most of ours, Rice-coded postings and ID lists, do not: they shrink
	// by a few percent. On the 2 GB real capture's index: 21.48 MB instead
	// of 22.11-22.39, at no measurable cost to ingest (four alternating
	// runs each).
	zstd := *block.ZstdCompression
	zstd.Name = "pcapflow-zstd"
	zstd.MinReductionPercent = 1
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings {
		return pebble.UniformDBCompressionSettings(&zstd)
	})
	if raw != nil {
		// Pebble asks for a level's profile each time it writes a table.
		zstdL0 := o.Levels[0].Compression
		o.Levels[0].Compression = func() *block.CompressionProfile {
			if raw.on.Load() {
				raw.wrote.Store(true)
				return block.NoCompression
			}
			return zstdL0()
		}
	}
	// 16 KiB blocks instead of Pebble's 4 KiB: zstd finds more to share
	// in a block of neighbouring flow records and ID lists. On the 2 GB
	// real capture's index: 22.41 MB instead of 23.54 (-4.8%); 32 and 64
	// KiB gain under 0.5% more. A one-flow extract reads one block per
	// key either way (16.1 against 16.0 ms as a process).
	for i := range o.Levels {
		o.Levels[i].BlockSize = 16 << 10
	}
	o.EnsureDefaults()
	return o
}

// openLocked takes pcapflow.lock and opens the Pebble store; a writable
// store reports its failures to g.
func openLocked(dir string, write bool, fs vfs.FS, memtable int, g *guard, raw *rawFlushes) (*pebble.DB, *os.File, error) {
	flag := os.O_RDONLY
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
		killPoint("dir-made")
		flag = os.O_RDWR | os.O_CREATE
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockName), flag, 0o644)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("%s: not a pcapflow index (no %s)", dir, lockName)
		}
		if write && (errors.Is(err, syscall.EROFS) || errors.Is(err, os.ErrPermission)) {
			return nil, nil, fmt.Errorf("%s: %w (%w)", dir, ErrReadOnly, err)
		}
		return nil, nil, err
	}
	if err := lockFile(lf, write); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, ErrInUse)
	}
	if write {
		killPoint("lock-taken")
	}
	o := pebbleOptions(!write, fs, raw)
	if memtable > 0 {
		o.MemTableSize = uint64(memtable)
	}
	var db *pebble.DB
	if write {
		// Opening writes (a new store's manifest, a replay's flush), and a
		// failure there is fatal to Pebble: the guard returns it.
		g.listen(o)
		dbc := make(chan *pebble.DB, 1)
		err = g.wait(func() error {
			d, err := pebble.Open(dir, o)
			dbc <- d
			return err
		})
		if err == nil {
			db = <-dbc
		}
	} else {
		db, err = pebble.Open(dir, o)
	}
	if err != nil {
		lf.Close()
		if errors.Is(err, ErrStore) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if write {
		killPoint("store-created")
	}
	return db, lf, nil
}

func getMeta(db pebble.Reader, name metaKey) (string, error) {
	v, c, err := db.Get(name.encode())
	if errors.Is(err, pebble.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	s := string(v)
	c.Close()
	return s, nil
}
