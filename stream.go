package pcapflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/pcapio"
	"github.com/pcapflow/pcapflow/reasm"
)

// GapPolicy says what a stream does with bytes that never came.
type GapPolicy = reasm.GapPolicy

// OverlapPolicy says which copy of bytes received twice a stream keeps.
type OverlapPolicy = reasm.OverlapPolicy

// The gap and overlap policies (docs/reassembly.md).
const (
	GapSkip      = reasm.GapSkip
	GapZero      = reasm.GapZero
	GapStop      = reasm.GapStop
	OverlapFirst = reasm.OverlapFirst
	OverlapLast  = reasm.OverlapLast
)

// ParseGapPolicy reads "skip", "zero" or "stop".
func ParseGapPolicy(s string) (GapPolicy, error) { return reasm.ParseGapPolicy(s) }

// ParseOverlapPolicy reads "first" or "last".
func ParseOverlapPolicy(s string) (OverlapPolicy, error) { return reasm.ParseOverlapPolicy(s) }

// StreamStats count what happened to a stream's bytes.
type StreamStats = reasm.Stats

// Window is a span of packet time: From <= t < To; a zero bound is open.
type Window struct{ From, To time.Time }

func (w Window) index() index.Window {
	var iw index.Window
	if !w.From.IsZero() {
		iw.From = w.From.UnixNano()
	}
	if !w.To.IsZero() {
		iw.To = w.To.UnixNano()
	}
	return iw
}

// StreamOptions configure reassembly (docs/reassembly.md).
type StreamOptions struct {
	Gaps    GapPolicy
	Overlap OverlapPolicy
	// MaxBuffer bounds the out-of-order bytes one direction holds
	// (0: 4 MiB); MaxMemory those of all directions (0: 256 MiB).
	MaxBuffer, MaxMemory int
	// Header frames each reassembled run of bytes with a 12-byte header
	// (u64 time ns, u16 length, u16 flow ID & 0xffff), so that streams
	// written to one writer can be told apart.
	Header bool
	// Window keeps only the packets inside it.
	Window Window
	// OnGap, when set, is told of every hole given up: n bytes missing
	// at offset off of flow's stream (the first byte is 1).
	OnGap func(flow, off, n uint64)
	// OnDone, when set, gets each stream's final counters.
	OnDone func(flow uint64, st StreamStats)
}

func (o *StreamOptions) policy() reasm.Policy {
	return reasm.Policy{Gaps: o.Gaps, Overlap: o.Overlap, MaxBuffer: o.MaxBuffer, Budget: &reasm.Budget{Max: o.MaxMemory}}
}

// StreamsResult reports a run of stream reassembly.
type StreamsResult struct {
	Streams int         // TCP and UDP flows reassembled
	Skipped int         // flows asked for that are neither TCP nor UDP
	Files   int         // files written (StreamsToDir)
	Bytes   int64       // bytes written
	Totals  StreamStats // the streams' counters, summed
	// BufferHits counts holes given up because a buffer limit was
	// reached (a subset of Totals.Gaps).
	BufferHits int
}

// streamFlows returns the TCP and UDP flows among ids, in ID order, with
// the tunnel depth of each: a flow inside a tunnel is reassembled from
// the packets its tunnels carry, whatever the caller knows of tunnels.
func (a *Archive) streamFlows(ctx context.Context, ids []uint64, res *StreamsResult) ([]*Flow, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var out []*Flow
	if len(ids) == 0 {
		return nil, nil
	}
	for _, id := range ids {
		if id == 0 || id > a.r.NumFlows() {
			return nil, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
	}
	err := a.r.Flows(ctx, ids, func(f *flow.Flow) error {
		if p := f.Key.Proto; p != 6 && p != 17 {
			res.Skipped++
			return nil
		}
		c := *f
		out = append(out, &c)
		return nil
	})
	res.Streams = len(out)
	return out, err
}

// assemble feeds the records of flows to an assembler whose sinks open
// makes, and fills res.
func (a *Archive) assemble(ctx context.Context, flows []*Flow, o *StreamOptions, open func(f *Flow) reasm.Sink, ended func(uint64), res *StreamsResult) error {
	byID := make(map[uint64]*Flow, len(flows))
	ids := make([]uint64, len(flows))
	for i, f := range flows {
		byID[f.ID], ids[i] = f, f.ID
	}
	pol := o.policy()
	asm := reasm.NewAssembler(pol, func(id uint64, _ uint8) reasm.Sink { return open(byID[id]) }, func(id uint64, st reasm.Stats) {
		t := &res.Totals
		t.Delivered += st.Delivered
		t.MissingBytes += st.MissingBytes
		t.RetransBytes += st.RetransBytes
		t.ConflictBytes += st.ConflictBytes
		t.Gaps += st.Gaps
		t.BufferHits += st.BufferHits
		t.Segments += st.Segments
		t.Resets += st.Resets
		if o.OnDone != nil {
			o.OnDone(id, st)
		}
	})
	asm.Ended, asm.OnGap = ended, o.OnGap
	asm.Expect(ids)
	for _, f := range flows {
		asm.SetDepth(f.ID, f.Depth)
	}
	win := o.Window.index()
	err := index.Records(ctx, a.r, ids, func(_ int, id uint64, rec *pcapio.Record) error {
		if !win.Contains(rec.Timestamp) {
			return nil
		}
		return asm.Record(id, rec)
	})
	if cerr := asm.Close(); err == nil {
		err = cerr
	}
	res.BufferHits = pol.Budget.Hits + res.Totals.BufferHits
	return err
}

// WriteStreams writes the reassembled streams of the flows ids (one
// direction each) to w, in the order their bytes are reassembled: with
// several flows their bytes interleave unless o.Header frames them.
// Flows that are neither TCP nor UDP are passed over (counted).
func (a *Archive) WriteStreams(ctx context.Context, w io.Writer, ids []uint64, o *StreamOptions) (StreamsResult, error) {
	var res StreamsResult
	if o == nil {
		o = &StreamOptions{}
	}
	if err := a.needPackets(); err != nil {
		return res, err
	}
	flows, err := a.streamFlows(ctx, ids, &res)
	if err != nil {
		return res, err
	}
	sw := &reasm.StreamWriter{W: w, Header: o.Header}
	err = a.assemble(ctx, flows, o, func(f *Flow) reasm.Sink { return sw.Sink(f.ID) }, nil, &res)
	res.Bytes = sw.Bytes
	return res, err
}

// StreamName is the file name StreamsToDir gives a flow's stream:
// <id>-<proto>-<src>.<sport>-<dst>.<dport>.
func StreamName(f *Flow) string {
	k := &f.Key
	return reasm.StreamName(f.ID, flow.ProtoName(k.Proto), k.SrcAddr().String(), k.SrcPort, k.DstAddr().String(), k.DstPort)
}

// DirOptions configure StreamsToDir.
type DirOptions struct {
	// Force writes into a directory that holds files already (streams
	// of the same name are replaced); without it such a directory is
	// refused.
	Force bool
	// MaxOpen bounds the files open at once (0: 256, or half the process's
	// open-file limit when that is lower).
	MaxOpen int
	// Name names a flow's file (nil: StreamName). Names must differ.
	Name func(*Flow) string
}

// ErrOutputExists means an output exists and Force was not given.
var ErrOutputExists = errors.New("the output exists")

// ErrOutputIsInput means an output would overwrite what is being read:
// a capture of the archive (links included) or a place inside an index.
var ErrOutputIsInput = errors.New("the output is an input")

// StreamsToDir writes the reassembled stream of each of the flows ids to
// its own file in dir (StreamName). The files are written into a hidden
// staging directory beside dir and moved into place only when every
// stream is complete: after a failure nothing partial is left, and an
// existing dir is as it was.
func (a *Archive) StreamsToDir(ctx context.Context, dir string, ids []uint64, o *StreamOptions, d *DirOptions) (StreamsResult, error) {
	var res StreamsResult
	if o == nil {
		o = &StreamOptions{}
	}
	if d == nil {
		d = &DirOptions{}
	}
	if err := a.needPackets(); err != nil {
		return res, err
	}
	if err := a.CheckOutput(filepath.Join(dir, "x")); err != nil {
		return res, fmt.Errorf("%s: %w", dir, ErrOutputIsInput)
	}
	// A file in dir's place is refused, --force or not: the publish
	// would remove it to rename the staging directory there.
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return res, &fs.PathError{Op: "streams", Path: dir, Err: syscall.ENOTDIR}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	if len(ents) > 0 && !d.Force {
		return res, fmt.Errorf("%s: %w and is not empty", dir, ErrOutputExists)
	}
	flows, err := a.streamFlows(ctx, ids, &res)
	if err != nil {
		return res, err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return res, err
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dir))+".partial-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(staging) // gone once moved; otherwise what failed
	if err := os.Chmod(staging, 0o755); err != nil {
		return res, err
	}
	w := &reasm.DirWriter{Dir: staging, Direct: true, MaxOpen: d.MaxOpen, Header: o.Header}
	files := map[uint64]*reasm.FileStream{}
	var finishErr error
	finish := func(id uint64) {
		if fs := files[id]; fs != nil {
			if err := fs.Finish(); err != nil && finishErr == nil {
				finishErr = err
			}
			delete(files, id)
		}
	}
	name := d.Name
	if name == nil {
		name = StreamName
	}
	err = a.assemble(ctx, flows, o, func(f *Flow) reasm.Sink {
		fs := w.Stream(name(f), f.ID)
		files[f.ID] = fs
		return fs
	}, finish, &res)
	if err == nil {
		err = finishErr
	}
	res.Bytes = w.Bytes
	if err != nil {
		w.Abort()
		return res, err
	}
	res.Files = w.Files
	return res, publish(staging, dir, len(ents) == 0)
}

// publish moves a finished staging directory to dir: renamed, when dir is
// new or empty; file by file into it otherwise.
func publish(staging, dir string, empty bool) error {
	if empty {
		os.Remove(dir) // empty, if it exists
		return os.Rename(staging, dir)
	}
	ents, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Chunk is a piece of a followed conversation, in the order the bytes
// were reassembled: Data from one side, or Missing bytes that never came.
type Chunk struct {
	// FromB is false for bytes the conversation's A sent (its first
	// flow: usually the client), true for B's.
	FromB bool
	Time  time.Time // of the packet that completed the bytes
	// Offset is the position of the chunk's first byte in its side's
	// stream (the first byte is 1).
	Offset  uint64
	Data    []byte // valid until the next chunk
	Missing uint64 // a gap: this many bytes never came (Data is empty)
}

// Follow returns the conversation of flow id (both directions, as
// Wireshark's Follow TCP Stream shows it) as chunks in reassembly order,
// which is capture order. Gaps come as chunks with Missing set, whatever
// the gap policy.
func (a *Archive) Follow(ctx context.Context, id uint64, o *StreamOptions) (*Conversation, iter.Seq2[Chunk, error]) {
	f, err := a.Flow(ctx, id)
	if err == nil {
		err = a.needPackets()
	}
	if err != nil {
		return nil, func(yield func(Chunk, error) bool) { yield(Chunk{}, err) }
	}
	c := &Conversation{ID: f.ID, A: f}
	if f.Peer != 0 {
		p, err := a.Flow(ctx, f.Peer)
		if err != nil {
			return nil, func(yield func(Chunk, error) bool) { yield(Chunk{}, err) }
		}
		c.B = p
		if p.ID < f.ID {
			c.ID, c.A, c.B = p.ID, p, f
		}
	}
	if o == nil {
		o = &StreamOptions{}
	}
	return c, func(yield func(Chunk, error) bool) {
		flows := []*Flow{c.A}
		if c.B != nil {
			flows = append(flows, c.B)
		}
		offs := map[uint64]*uint64{}
		stopped := false
		emit := func(ch Chunk) error {
			if stopped || !yield(ch, nil) {
				stopped = true
				return errStop
			}
			return nil
		}
		oo := *o
		if oo.Gaps == GapZero {
			oo.Gaps = GapSkip // a gap is shown as missing, not as zeros
		}
		oo.OnGap = func(id, off, n uint64) {
			if o.OnGap != nil {
				o.OnGap(id, off, n)
			}
			if p := offs[id]; p != nil {
				*p = off + n
			}
			emit(Chunk{FromB: id != c.A.ID, Offset: off, Missing: n})
		}
		var res StreamsResult
		err := a.assemble(ctx, flows, &oo, func(fl *Flow) reasm.Sink {
			var next uint64 = 1
			offs[fl.ID] = &next
			fromB := fl.ID != c.A.ID
			return reasm.SinkFunc(func(ts int64, b []byte) error {
				off := next
				next += uint64(len(b))
				return emit(Chunk{FromB: fromB, Time: time.Unix(0, ts).UTC(), Offset: off, Data: b})
			})
		}, nil, &res)
		if err != nil && !errors.Is(err, errStop) && !stopped {
			yield(Chunk{}, err)
		}
	}
}
