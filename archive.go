package pcapflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
)

// Flow is one direction of a conversation: its key, counters, times,
// TCP state and history (see docs/flows.md for every field).
type Flow = flow.Flow

// Conversation is both directions of a connection: A, the flow seen
// first, and B, its peer (nil when only one direction was seen).
type Conversation = flow.Conversation

// Capture describes one capture of an archive: its path, size, layout
// and counts.
type Capture = index.CaptureInfo

// Progress is updated while captures are read; its fields are safe to
// read from another goroutine.
type Progress = index.Progress

// DefaultIdleTimeout ends a connection silent for this long (capture
// time); DefaultCloseTimeout ends a closed one (RST, or FIN both ways)
// after this much silence. Both are explained in docs/flows.md.
const (
	DefaultIdleTimeout  = flow.DefaultIdleTimeout
	DefaultCloseTimeout = flow.DefaultCloseTimeout
)

// Settings are the flow semantics an archive is read with. An index
// records them; captures are added to it with the same.
type Settings struct {
	// IdleTimeout ends a connection silent for longer; a later packet
	// with its key starts a new flow. 0 means DefaultIdleTimeout; a
	// negative value means never (every flow stays in memory while
	// captures are read).
	IdleTimeout time.Duration
	// CloseTimeout ends a closed TCP connection (a RST, or a FIN each
	// way) after this much silence; a later packet with its key starts a
	// new flow. 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
	// NoTunnels leaves tunnels (VXLAN, GRE, Geneve, ...) closed: their
	// payload is not decoded into inner flows.
	NoTunnels bool
	// VXLANPorts are the UDP ports decoded as VXLAN (nil: 4789 and 8472).
	VXLANPorts []uint16
}

func (s Settings) index() index.Settings {
	return index.Settings{IdleTimeout: s.IdleTimeout, CloseTimeout: s.CloseTimeout, NoTunnels: s.NoTunnels, VXLANPorts: s.VXLANPorts}
}

// ScanOptions configure Scan and OpenOrScan.
type ScanOptions struct {
	Settings
	// Warn receives problems that do not stop the scan: a capture cut
	// short, a damaged capture passed over (with file and offset). Nil
	// discards them; Scan's error still reports damaged captures.
	Warn func(error)
	// Progress, when set, is updated while captures are read.
	Progress *Progress
	// Stdin is read for the capture "-" (nil: os.Stdin).
	Stdin io.Reader
	// FlowsOnly skips recording each flow's packets: Flows, Count and
	// the others work, Extract, Streams and Follow return ErrNoPackets.
	// It saves memory in proportion to the packets.
	FlowsOnly bool
	// MaxPackets, when positive, stops reading each capture after that
	// many records.
	MaxPackets int64
}

// Archive is the flows of a set of captures, from an index (Open) or
// read into memory (Scan); both answer the same questions the same way.
//
// An Archive is safe for concurrent use by many goroutines; an index may
// be open in many processes at once while one process adds to it with
// Index (readers see the archive as it was when they opened it).
type Archive struct {
	r       index.Reader
	store   *index.Store // nil for a scan
	dir     string
	scanErr error
	names   []string
	packets bool
	set     index.Settings // what it was read with, defaults filled in
}

func newArchive(r index.Reader, store *index.Store, dir string) *Archive {
	a := &Archive{r: r, store: store, dir: dir, packets: true}
	for _, c := range r.Captures() {
		a.names = append(a.names, c.Name)
	}
	return a
}

// Open opens an index read-only. It fails if the index is incomplete
// (ErrIncomplete), of another schema (ErrSchema), or if one of its
// captures changed since it was indexed (*StaleError): an index never
// answers for captures it does not describe. A capture moved away is
// reported only by the calls that read packets.
func Open(dir string) (*Archive, error) {
	s, err := index.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := s.Check(); err != nil {
		s.Close()
		return nil, err
	}
	return openedArchive(s, dir), nil
}

// openedArchive is the Archive of an index store.
func openedArchive(s *index.Store, dir string) *Archive {
	a := newArchive(s, s, dir)
	a.set = s.Settings().Filled()
	// A capture indexed only up to damage answers for what was read, and
	// every query says so again, as a scan of it would.
	var damaged CaptureErrors
	for _, c := range s.Captures() {
		if c.Damaged {
			damaged = append(damaged, fmt.Errorf("%s (indexed up to there)", c.Warning))
		}
	}
	if len(damaged) > 0 {
		a.scanErr = damaged
	}
	return a
}

// Warnings are what was said of the captures when they were read that
// did not fail them (a capture cut off in its last record), and the
// captures that grew since (*GrownError: still being written, their
// bytes after the indexed ones in no answer). (Damage is Err.)
func (a *Archive) Warnings() []string {
	var out []string
	if a.store == nil {
		return nil
	}
	for _, c := range a.r.Captures() {
		if c.Warning != "" && !c.Damaged {
			out = append(out, c.Warning)
		}
	}
	for _, g := range a.Grown() {
		out = append(out, g.Error())
	}
	return out
}

// Grown lists the captures of an index that grew after they were indexed
// (they were still being written): it answers for the bytes it read of
// them, and the rest are in no answer. A scan reads them whole.
func (a *Archive) Grown() []*GrownError {
	if a.store == nil {
		return nil
	}
	var out []*GrownError
	for i, c := range a.store.Captures() {
		if n := a.store.Grown(i); n > 0 {
			path, err := a.store.CapturePath(i)
			if err != nil {
				path = c.Path
			}
			out = append(out, &GrownError{Capture: path, OldSize: c.Size, NewSize: n})
		}
	}
	return out
}

// Scan reads captures into memory: files, directories (their captures,
// found by content) or "-" for standard input, in time order with one
// flow table across them, exactly as Index would. Every capture that can
// be read is read; if some could not (or only in part), Scan returns the
// archive of what was read together with an error listing them (see
// Archive.Err).
func Scan(ctx context.Context, paths []string, o *ScanOptions) (*Archive, error) {
	if o == nil {
		o = &ScanOptions{}
	}
	opts := index.ScanOptions{KeepPackets: !o.FlowsOnly}
	opts.Settings = o.Settings.index()
	opts.Warn, opts.Progress, opts.Stdin, opts.MaxPackets = o.Warn, o.Progress, o.Stdin, o.MaxPackets
	m, err := index.Scan(ctx, paths, opts)
	if m == nil || (err != nil && len(m.Captures()) == 0) {
		if m != nil {
			m.Close()
		}
		return nil, err
	}
	a := newArchive(m, nil, "")
	a.set = opts.Settings.Filled()
	a.scanErr, a.packets = err, !o.FlowsOnly
	return a, err
}

// DefaultIndex is where Index puts the index of a single capture when no
// directory is given: CAPTURE.pfidx beside it.
func DefaultIndex(capture string) string { return index.DefaultPath(capture) }

// OpenOrScan opens the index beside a single capture (DefaultIndex) when
// there is one, and scans the captures otherwise. Settings other than
// the defaults always scan, since an index is built with its own.
func OpenOrScan(ctx context.Context, paths []string, o *ScanOptions) (*Archive, error) {
	if len(paths) == 1 && paths[0] != "-" && (o == nil || o.Settings.IdleTimeout == 0 && o.CloseTimeout == 0 && !o.NoTunnels && o.VXLANPorts == nil) {
		dir := DefaultIndex(paths[0])
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return Open(dir)
		}
	}
	return Scan(ctx, paths, o)
}

// Restrict returns the archive restricted to the flows with packets in
// the given captures (paths as given to Index, or their names).
func (a *Archive) Restrict(ctx context.Context, captures []string) (*Archive, error) {
	r, err := index.Restrict(ctx, a.r, captures)
	if err != nil {
		return nil, err
	}
	b := *a
	b.r = r
	return &b, nil
}

// Settings returns the flow semantics the archive was read with: an
// index's as it records them, a scan's as asked, with the defaults
// written out.
// IdleTimeout is negative when connections never time out.
func (a *Archive) Settings() Settings {
	return Settings{IdleTimeout: a.set.IdleTimeout, CloseTimeout: a.set.CloseTimeout, NoTunnels: a.set.NoTunnels, VXLANPorts: a.set.VXLANPorts}
}

// Err returns the error that ended a scan early or left captures out,
// or, for an index, that its captures were damaged and indexed only up
// to the damage (what was read stands), or nil.
func (a *Archive) Err() error { return a.scanErr }

// Index returns the index directory the archive is read from, or "" for
// a scan.
func (a *Archive) Index() string { return a.dir }

// Captures returns the archive's captures, in time order.
func (a *Archive) Captures() []Capture { return a.r.Captures() }

// CaptureName returns the name of capture i (a Flow's Capture).
func (a *Archive) CaptureName(i int) string {
	if i >= 0 && i < len(a.names) {
		return a.names[i]
	}
	return "?"
}

// NumFlows returns the number of flows in the archive.
func (a *Archive) NumFlows() uint64 { return a.r.NumFlows() }

// Interrupted reports an index whose last run was cut short: it answers
// what its last completed run committed.
func (a *Archive) Interrupted() bool { return a.store != nil && a.store.Interrupted }

// Live reports whether flow id's connection was still open at the end of
// the archive as indexed: adding captures may continue it. (A scan ends
// every connection at its end.)
func (a *Archive) Live(id uint64) bool { return a.store != nil && a.store.Live(id) }

// Close releases the archive.
func (a *Archive) Close() error { return a.r.Close() }

// inputs are the files the archive reads.
func (a *Archive) inputs() []string {
	var in []string
	for _, c := range a.r.Captures() {
		if c.Path != "" && c.Path != "-" {
			in = append(in, c.Path)
		}
	}
	if a.dir != "" {
		in = append(in, a.dir)
	}
	return in
}

func (a *Archive) needPackets() error {
	if !a.packets {
		return ErrNoPackets
	}
	return nil
}

// Errors, to be tested with errors.Is or errors.As.
var (
	// ErrNoFlow means a flow ID is not in the archive.
	ErrNoFlow = index.ErrNoFlow
	// ErrIncomplete means an index's first run never finished.
	ErrIncomplete = index.ErrIncomplete
	// ErrSchema means an index was written by another version.
	ErrSchema = index.ErrSchema
	// ErrNotIndex means a directory is not an index.
	ErrNotIndex = index.ErrNotIndex
	// ErrInUse means another process is adding to the index.
	ErrInUse = index.ErrInUse
	// ErrOlder means a capture begins before the end of the archive it
	// was to be added to; an index grows in time order.
	ErrOlder = index.ErrOlder
	// ErrSettings means captures were to be added with other Settings
	// than the index was made with.
	ErrSettings = index.ErrSettings
	// ErrStore means the index could not be written (a full disk, an I/O
	// error); nothing of the run was committed.
	ErrStore = index.ErrStore
	// ErrReadOnly means the index cannot be written; it can be queried.
	ErrReadOnly = index.ErrReadOnly
	// ErrNoPackets means packets were asked of a scan made with
	// FlowsOnly.
	ErrNoPackets = errors.New("the scan kept no packets (FlowsOnly)")
)

// CaptureErrors lists the captures of a scan that could not be read, or
// read only in part; each error names the file and the byte offset.
type CaptureErrors = index.CaptureErrors

// StaleError reports a capture that changed after it was indexed.
type StaleError = index.StaleError

// GrownError describes a capture that grew after it was indexed (it was
// still being written): a warning, since the index answers for the bytes
// it read.
type GrownError = index.GrownError
