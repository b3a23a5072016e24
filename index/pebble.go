package index

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// lockName is our own advisory lock in the index directory. Pebble's lock
// is exclusive even for read-only opens; ours lets many readers share an
// index while a writer excludes them all.
const lockName = "pcapflow.lock"

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

// noLockFS skips Pebble's directory lock; pcapflow.lock guards the index.
type noLockFS struct{ vfs.FS }

func (noLockFS) Lock(string) (io.Closer, error) { return io.NopCloser(nil), nil }

func pebbleOptions(readOnly bool) *pebble.Options {
	o := &pebble.Options{
		FS:                 noLockFS{vfs.Default},
		Logger:             quietLogger{},
		ReadOnly:           readOnly,
		FormatMajorVersion: pebble.FormatNewest,
	}
	if !readOnly {
		// A bulk load: the index can always be rebuilt from the captures,
		// so no write-ahead log; progress is made durable by explicit
		// flushes around the state marker (see Build).
		o.DisableWAL = true
		o.MemTableSize = 16 << 20
		// An index run writes tens of megabytes once; compacting its few
		// level-0 tables as they come costs the run half a second and
		// gains its readers nothing measurable. They are compacted once
		// enough runs have added theirs.
		o.L0CompactionThreshold = 8
		o.L0CompactionFileThreshold = 64
		o.L0StopWritesThreshold = 64
	}
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings {
		return pebble.UniformDBCompressionSettings(block.ZstdCompression)
	})
	o.EnsureDefaults()
	return o
}

// openLocked takes pcapflow.lock and opens the Pebble store.
func openLocked(dir string, write bool) (*pebble.DB, *os.File, error) {
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
		return nil, nil, err
	}
	if err := lockFile(lf, write); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, ErrInUse)
	}
	if write {
		killPoint("lock-taken")
	}
	db, err := pebble.Open(dir, pebbleOptions(!write))
	if err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if write {
		killPoint("store-created")
	}
	return db, lf, nil
}

func getMeta(db *pebble.DB, name metaKey) (string, error) {
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
