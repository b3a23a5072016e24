package pcapflow

import (
	"context"
	"time"

	"github.com/pcapflow/pcapflow/index"
)

// IndexOptions configure Index.
type IndexOptions struct {
	Settings
	// KeepSettings adds to an index that exists with the settings it
	// records, ignoring Settings (which then apply to a new index only).
	// Without it, Settings other than the index's are refused
	// (ErrSettings): an index made with a 1 m idle timeout differs from
	// the defaults.
	KeepSettings bool
	// Warn receives problems that do not stop the run: a capture cut
	// short, a damaged capture left out (with file and offset).
	Warn func(error)
	// Progress, when set, is updated while captures are read.
	Progress *Progress
	// MaxPackets, when positive, stops reading each capture after that
	// many records.
	MaxPackets int64
	// Settle, when positive, leaves for a later run the new captures
	// modified less than Settle ago (a writer may still be appending to
	// them: an index cannot add to a capture it holds), and those after
	// them in time order. They are listed in the result's Settling.
	Settle time.Duration
}

// IndexResult reports what Index did: the captures added, those already
// indexed, those that could not be read (Errors), the files of the
// directories given that are not captures.
type IndexResult = index.BuildResult

// Index creates the index in dir, or adds to it the captures it does
// not hold yet (matched by absolute path): files or directories (their
// captures, found by content). The new captures are read in time order,
// continuing the archive: connections still open at its end continue
// into them, so an index built one capture at a time, in time order,
// equals one built from all of them at once. A capture older than the
// archive's end is refused (ErrOlder).
//
// Only one Index runs on a directory at a time (ErrInUse); readers are
// not disturbed: they see the archive as it was when they opened it.
// A capture that cannot be read at all is left out, one damaged is
// indexed up to the damage; both are in the result's Errors. A run that
// fails or is killed commits nothing: the index answers as before it.
func Index(ctx context.Context, dir string, paths []string, o *IndexOptions) (*IndexResult, error) {
	if o == nil {
		o = &IndexOptions{}
	}
	opts := index.Options{Settings: o.Settings.index(), KeepSettings: o.KeepSettings, Warn: o.Warn, Progress: o.Progress, MaxPackets: o.MaxPackets, Settle: o.Settle}
	return index.Build(ctx, dir, paths, opts)
}

// Discover lists the captures among paths: files as they are, and the
// files of directories whose content is a capture (pcap, pcapng, or
// either compressed with gzip or zstd), whatever their names. Skipped
// are the directories' files that are not captures.
func Discover(paths []string) (captures, skipped []string, err error) {
	d, err := index.Discover(paths)
	if err != nil {
		return nil, nil, err
	}
	return d.Captures, d.Skipped, nil
}

// Indexer is an index open for adding captures while it answers: a
// sensor's server indexes each capture as it arrives and hands out
// Archives of what it has committed. Archives taken from it are
// snapshots: an Add does not change them, and a new Archive after it
// sees the new captures. Add and Close are for one goroutine; Archive
// may be called from any.
type Indexer struct {
	w   *index.Writer
	dir string
}

// OpenIndexer opens (or creates) the index in dir for adding, holding it
// against other writers (ErrInUse) until Close.
func OpenIndexer(dir string, o *IndexOptions) (*Indexer, error) {
	if o == nil {
		o = &IndexOptions{}
	}
	opts := index.Options{Settings: o.Settings.index(), KeepSettings: o.KeepSettings, Warn: o.Warn, Progress: o.Progress, MaxPackets: o.MaxPackets, Settle: o.Settle}
	w, err := index.OpenWriter(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Indexer{w: w, dir: dir}, nil
}

// Add indexes the captures among paths that the index does not hold,
// as Index does, and commits them.
func (x *Indexer) Add(ctx context.Context, paths []string) (*IndexResult, error) {
	return x.w.Add(ctx, paths)
}

// Archive returns the archive as last committed. Close it when done.
func (x *Indexer) Archive() (*Archive, error) {
	s, err := x.w.Reader()
	if err != nil {
		return nil, err
	}
	if err := s.Check(); err != nil {
		s.Close()
		return nil, err
	}
	return openedArchive(s, x.dir), nil
}

// Close closes the index; a new one into which nothing was committed is
// removed.
func (x *Indexer) Close() error { return x.w.Close() }
